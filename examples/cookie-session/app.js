// A page that signs in with the api's cookie session: the tokens stay in
// HttpOnly cookies the page never sees; every call sends them with
// `credentials: "include"`. Served from another origin, that origin must be
// in the api's CORS_ALLOWED_ORIGINS (the browser sends Origin, which also
// satisfies the api's CSRF check).
//
// An account with a second factor signs in in two steps: the password
// answers a challenge, and the second step presents it with a code, a
// recovery code or a passkey (WebAuthn, through the browser's own JSON
// helpers: `PublicKeyCredential.parse…OptionsFromJSON` and `toJSON()`).
"use strict";

const api = new URLSearchParams(location.search).get("api") || location.origin;
const $ = (id) => document.getElementById(id);
$("api").textContent = api;

async function call(method, path, body) {
  const init = { method, credentials: "include", headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(api + path, init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function show(status, result) {
  $("status").textContent = status;
  $("output").textContent = result ? JSON.stringify(result.body, null, 2) : "";
}

// The login form is for someone signed out; the second step only while due.
function signedIn(yes) {
  $("login").hidden = yes;
  if (yes) {
    $("second-step").hidden = true;
  }
}

async function showSession() {
  const result = await call("GET", "/v1/auth/session");
  signedIn(result.status === 200);
  if (result.status === 200) {
    show("signed in as " + result.body.user.email, result);
  } else {
    show("signed out", result);
  }
}

// The first step's answer while a second step is due.
let pending = null;

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await call("POST", "/v1/auth/login", {
    email: $("email").value,
    password: $("password").value,
    session: "cookie",
  });
  $("password").value = "";
  if (result.status === 200 && result.body.second_factor_required) {
    pending = result.body;
    $("second-step").hidden = false;
    $("passkey-login-button").hidden = !pending.methods.includes("passkey");
    show("second factor required", result);
  } else if (result.status === 200) {
    await showSession();
  } else {
    show("login refused (" + result.status + ")", result);
  }
});

async function secondStep(proof) {
  const result = await call("POST", "/v1/auth/login/second-factor", {
    challenge: pending.challenge,
    session: "cookie",
    ...proof,
  });
  if (result.status === 200) {
    pending = null;
    $("second-step").hidden = true;
    await showSession();
  } else {
    show("second factor refused (" + result.status + ")", result);
  }
}

$("second-step").addEventListener("submit", async (event) => {
  event.preventDefault();
  const code = $("code").value.trim();
  $("code").value = "";
  // Six digits come from the app; anything else is a recovery code.
  await secondStep(/^[0-9]{6}$/.test(code) ? { code } : { recovery_code: code });
});

$("passkey-login-button").addEventListener("click", async () => {
  try {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(pending.passkey.publicKey);
    const credential = await navigator.credentials.get({ publicKey });
    await secondStep({ passkey: credential.toJSON() });
  } catch (error) {
    show("passkey failed: " + error.name, null);
  }
});

$("add-passkey-button").addEventListener("click", async () => {
  const session = await call("GET", "/v1/auth/session");
  if (session.status !== 200) {
    return show("signed out", session);
  }
  const passkeys = "/v1/users/" + session.body.user.id + "/second-factors/passkeys";
  const begun = await call("POST", passkeys);
  if (begun.status !== 201) {
    return show("passkey refused (" + begun.status + ")", begun);
  }
  try {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(begun.body.passkey.publicKey);
    const credential = await navigator.credentials.create({ publicKey });
    const finished = await call("POST", passkeys + "/" + begun.body.ceremony, {
      credential: credential.toJSON(),
      name: "this browser",
    });
    show(finished.status === 200 ? "passkey added" : "passkey refused (" + finished.status + ")", finished);
  } catch (error) {
    show("passkey failed: " + error.name, null);
  }
});

$("session-button").addEventListener("click", showSession);

$("refresh-button").addEventListener("click", async () => {
  const result = await call("POST", "/v1/auth/refresh");
  if (result.status === 200) {
    await showSession();
  } else {
    show("refresh refused (" + result.status + ")", result);
  }
});

$("logout-button").addEventListener("click", async () => {
  const result = await call("POST", "/v1/auth/logout");
  if (result.status === 204) {
    signedIn(false);
  }
  show(result.status === 204 ? "signed out" : "logout refused (" + result.status + ")", null);
});
