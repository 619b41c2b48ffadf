// A page that signs in with the api's cookie session: the tokens stay in
// HttpOnly cookies the page never sees; every call sends them with
// `credentials: "include"`. Served from another origin, that origin must be
// in the api's CORS_ALLOWED_ORIGINS (the browser sends Origin, which also
// satisfies the api's CSRF check).
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

async function showSession() {
  const result = await call("GET", "/v1/auth/session");
  if (result.status === 200) {
    show("signed in as " + result.body.user.email, result);
  } else {
    show("signed out", result);
  }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const result = await call("POST", "/v1/auth/login", {
    email: $("email").value,
    password: $("password").value,
    session: "cookie",
  });
  $("password").value = "";
  if (result.status === 200) {
    await showSession();
  } else {
    show("login refused (" + result.status + ")", result);
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
  show(result.status === 204 ? "signed out" : "logout refused (" + result.status + ")", null);
});
