"""A machine client of the identity service written with a standard OAuth
2.0 library (authlib) and nothing service-specific: it obtains an access
token with the client-credentials grant (RFC 6749 section 4.4) and calls the
API with it, authenticating the client both ways the README's "Machine
clients" section offers (HTTP Basic and form fields).

    python client_credentials.py BASE_URL CLIENT_ID CLIENT_SECRET [SCOPE]

CLIENT_ID is the API key's id, CLIENT_SECRET the whole key. Prints one JSON
object: per authentication method, what the token endpoint answered and the
status of `GET /v1/users` with the token; and the RFC error code authlib
raised for a wrong secret and for a scope beyond the key's.
"""

import json
import sys

from authlib.integrations.requests_client import OAuth2Session
from authlib.common.errors import AuthlibBaseError

METHODS = ("client_secret_basic", "client_secret_post")


def session(base, client_id, secret, scope, method):
    return OAuth2Session(
        client_id,
        secret,
        scope=scope,
        token_endpoint_auth_method=method,
    ), f"{base}/v1/oauth/token"


def use(base, client_id, secret, scope, method):
    client, endpoint = session(base, client_id, secret, scope, method)
    token = client.fetch_token(endpoint, grant_type="client_credentials")
    users = client.get(f"{base}/v1/users")
    created = client.post(
        f"{base}/v1/roles",
        json={"name": f"by-{method}", "permissions": []},
    )
    return {
        "token_type": token["token_type"],
        "scope": token.get("scope"),
        "expires_in": token["expires_in"],
        "users_status": users.status_code,
        "create_role_status": created.status_code,
    }


def refused(base, client_id, secret, scope):
    client, endpoint = session(base, client_id, secret, scope, "client_secret_basic")
    try:
        client.fetch_token(endpoint, grant_type="client_credentials")
    except AuthlibBaseError as error:
        return error.error
    return "accepted"


def main():
    base, client_id, secret = sys.argv[1:4]
    scope = sys.argv[4] if len(sys.argv) > 4 else None
    results = {method: use(base, client_id, secret, scope, method) for method in METHODS}
    wrong = secret[:-1] + ("1" if secret.endswith("0") else "0")
    results["wrong_secret"] = refused(base, client_id, wrong, scope)
    results["wider_scope"] = refused(base, client_id, secret, "users:read users:erase")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
