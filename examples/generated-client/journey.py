"""An integrator's journey through the identity service, written against a
client that openapi-python-client generated from the service's OpenAPI
document (`GET /openapi.json`), used as generated: no hand fix between this
script and the HTTP API.

    openapi-python-client generate --url http://localhost:8080/openapi.json \
        --output-path /tmp/clients/identity_client --meta none \
        --config examples/generated-client/generator.yaml
    python3 journey.py /tmp/clients http://localhost:8080 admin@example.com 'the password'

Each step prints one line; the last line is `journey: N of M steps`. The
exit status is 1 when a step failed.
"""

import enum
import sys
import typing
import uuid

sys.path.insert(0, sys.argv[1])

from identity_client import AuthenticatedClient, Client  # noqa: E402
from identity_client import models  # noqa: E402
from identity_client.api.audit import (  # noqa: E402
    audit_export,
    audit_history,
    audit_keys,
    audit_list,
    audit_state,
    audit_verify,
)
from identity_client.api.auth import (  # noqa: E402
    auth_current_session,
    auth_login,
    auth_logout,
    auth_refresh,
)
from identity_client.api.roles import roles_create, roles_list  # noqa: E402
from identity_client.api.sessions import sessions_list  # noqa: E402
from identity_client.api.users import (  # noqa: E402
    users_assign_role,
    users_get,
    users_list,
    users_me,
    users_register,
    users_update_profile,
)
from identity_client.api.webhooks import webhooks_create, webhooks_list  # noqa: E402

BASE_URL, EMAIL, PASSWORD = sys.argv[2], sys.argv[3], sys.argv[4]


def closed_value(operation, parameter, value):
    """The generated enum member for `value` of an operation's parameter
    (the client names its enums; the document only lists their values)."""
    hints = typing.get_type_hints(operation.sync_detailed)
    for candidate in typing.get_args(hints[parameter]) or (hints[parameter],):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate(value)
    raise AssertionError(f"{parameter} of {operation.__name__} is not an enum")


def closed_items(model, field, values):
    """The generated enum members for a list field of a request model."""
    hint = typing.get_type_hints(model)[field]
    (item,) = [arg for arg in typing.get_args(hint) if typing.get_origin(arg) is list] or [hint]
    (kind,) = typing.get_args(item)
    return [kind(value) for value in values]


class Journey:
    def __init__(self):
        self.passed = 0
        self.steps = 0

    def step(self, name, check):
        self.steps += 1
        try:
            outcome = check()
        except Exception as error:  # a step that raises has failed
            outcome = f"{type(error).__name__}: {error}"
        if outcome is True:
            self.passed += 1
            print(f"ok   {name}")
        else:
            print(f"FAIL {name}: {outcome}")


def main():
    journey = Journey()
    state = {}
    anonymous = Client(base_url=BASE_URL, raise_on_unexpected_status=True)

    def log_in():
        answer = auth_login.sync_detailed(
            client=anonymous,
            body=models.LoginRequest(email=EMAIL, password=PASSWORD),
        )
        token = answer.parsed
        state["refresh_token"] = token.refresh_token
        state["client"] = AuthenticatedClient(
            base_url=BASE_URL, token=token.access_token, raise_on_unexpected_status=True
        )
        return answer.status_code == 200 and isinstance(token, models.TokenPair)

    journey.step("log in with a password: a token pair", log_in)
    client = lambda: state["client"]  # noqa: E731

    def me():
        answer = users_me.sync_detailed(client=client()).parsed
        state["admin_id"] = answer.id
        return answer.email == EMAIL and "roles:write" in answer.permissions

    journey.step("who am I: the administrator, holding roles:write", me)

    def session():
        answer = auth_current_session.sync_detailed(client=client()).parsed
        return answer.user.email == EMAIL and answer.step_up_required is False

    journey.step("the current session", session)

    email = f"grace-{uuid.uuid4().hex[:8]}@example.com"

    def register():
        body = models.RegisterRequest(
            email=email, password="a long and unusual passphrase", display_name="Grace"
        )
        answer = users_register.sync_detailed(client=client(), body=body)
        state["user_id"], state["position"] = answer.parsed.id, answer.parsed.position
        return answer.status_code == 201

    journey.step("register a user", register)

    def read_own_write():
        answer = users_get.sync_detailed(
            state["user_id"], client=client(), min_position=state["position"]
        ).parsed
        return answer.email == email and answer.display_name == "Grace"

    journey.step("read the user once projected (min_position)", read_own_write)

    def list_active():
        status = closed_value(users_list, "status", "active")
        page = users_list.sync_detailed(client=client(), status=status, email=email).parsed
        return [user.id for user in page.items] == [state["user_id"]]

    journey.step("list active users by email", list_active)

    def rename():
        body = models.UpdateProfileRequest(display_name="Grace Hopper")
        answer = users_update_profile.sync_detailed(state["user_id"], client=client(), body=body)
        state["position"] = answer.parsed.position
        return answer.status_code == 200

    journey.step("change the display name", rename)

    def create_role():
        body = models.CreateRoleRequest(
            name=f"readers-{uuid.uuid4().hex[:6]}",
            description="Read users",
            permissions=closed_items(models.CreateRoleRequest, "permissions", ["users:read"]),
        )
        answer = roles_create.sync_detailed(client=client(), body=body)
        state["role_id"], state["position"] = answer.parsed.id, answer.parsed.position
        return answer.status_code == 201

    journey.step("create a role", create_role)

    def list_roles():
        roles = roles_list.sync_detailed(client=client(), min_position=state["position"]).parsed
        return any(role.id == state["role_id"] for role in roles.items)

    journey.step("list the roles", list_roles)

    def assign():
        body = models.AssignRoleRequest(role_id=state["role_id"])
        answer = users_assign_role.sync_detailed(state["user_id"], client=client(), body=body)
        state["position"] = answer.parsed.position
        return answer.status_code == 200

    journey.step("assign the role", assign)

    def user_holds_role():
        kind = closed_value(audit_state, "aggregate_type", "user")
        view = audit_state.sync_detailed(kind, str(state["user_id"]), client=client()).parsed.state
        return state["role_id"] in view.roles or view

    journey.step("the user holds the role (its state)", user_holds_role)

    def audit_events():
        kind = closed_value(audit_list, "aggregate_type", "user")
        order = closed_value(audit_list, "order", "oldest")
        page = audit_list.sync_detailed(
            client=client(),
            aggregate_type=kind,
            aggregate_id=str(state["user_id"]),
            order=order,
            min_position=state["position"],
        ).parsed
        types = [event.event_type for event in page.items]
        return types[0] == "user.registered" and "user.role_assigned" in types or types

    journey.step("the user's events in the audit log, oldest first", audit_events)

    def history():
        kind = closed_value(audit_history, "aggregate_type", "user")
        page = audit_history.sync_detailed(kind, str(state["user_id"]), client=client()).parsed
        return len(page.items) >= 3 and page.items[0].event_type == "user.registered"

    journey.step("the user's stream from the event store", history)

    def user_state():
        kind = closed_value(audit_state, "aggregate_type", "user")
        answer = audit_state.sync_detailed(kind, str(state["user_id"]), client=client()).parsed
        view = answer.state
        return isinstance(view, models.UserStateView) and view.display_name == "Grace Hopper" or view

    journey.step("the user's state, decoded as a user", user_state)

    def verify():
        answer = audit_verify.sync_detailed(client=client()).parsed
        return answer.ok is True

    journey.step("the log's proof holds", verify)

    def export():
        import json

        kind = closed_value(audit_export, "aggregate_type", "user")
        answer = audit_export.sync_detailed(
            client=client(), aggregate_type=kind, aggregate_id=str(state["user_id"])
        )
        lines = [json.loads(line) for line in answer.content.splitlines() if line.strip()]
        events = lines[1:-1]
        return (
            "export" in lines[0]
            and lines[-1] == {"end": {"events": len(events)}}
            and events[0]["event_type"] == "user.registered"
        ) or lines

    journey.step("export the user's events as NDJSON", export)

    def keys():
        answer = audit_keys.sync_detailed(client=client()).parsed
        return len(answer.keys) >= 1

    journey.step("the checkpoint keys", keys)

    def webhook():
        body = models.CreateWebhookRequest.from_dict(
            {"url": "http://127.0.0.1:9/identity-events", "event_types": ["user.*"], "description": "CRM"}
        )
        answer = webhooks_create.sync_detailed(client=client(), body=body)
        state["webhook_id"], state["position"] = answer.parsed.id, answer.parsed.position
        return answer.status_code == 201 and answer.parsed.secret.startswith("whsec_")

    journey.step("register a webhook: its secret shown once", webhook)

    def list_webhooks():
        hooks = webhooks_list.sync_detailed(client=client()).parsed
        return [hook.id for hook in hooks.items] == [state["webhook_id"]]

    journey.step("list the webhooks", list_webhooks)

    def webhook_state():
        kind = closed_value(audit_state, "aggregate_type", "webhook")
        answer = audit_state.sync_detailed(kind, str(state["webhook_id"]), client=client()).parsed
        view = answer.state
        return isinstance(view, models.WebhookStateView) and view.enabled is True or view

    journey.step("the webhook's state, decoded as a webhook", webhook_state)

    def sessions():
        page = sessions_list.sync_detailed(client=client(), user_id=state["admin_id"]).parsed
        return len(page.items) >= 1

    journey.step("the administrator's sessions", sessions)

    def refresh():
        body = models.RefreshRequest(refresh_token=state["refresh_token"])
        token = auth_refresh.sync_detailed(client=anonymous, body=body).parsed
        state["client"] = AuthenticatedClient(
            base_url=BASE_URL, token=token.access_token, raise_on_unexpected_status=True
        )
        return isinstance(token, models.TokenPair)

    journey.step("refresh: a new token pair", refresh)

    def log_out():
        return auth_logout.sync_detailed(client=client()).status_code == 204

    journey.step("log out", log_out)

    print(f"journey: {journey.passed} of {journey.steps} steps")
    return 0 if journey.passed == journey.steps else 1


if __name__ == "__main__":
    sys.exit(main())
