#!/usr/bin/env python3
"""An independent verifier of identity-audit-export/2 files.

Written from docs/audit-log-specification.md alone (section numbers in the
comments refer to it), with the standard library and `cryptography`.

    verify_export.py --public-key keys.pem [--trusted-checkpoints FILE] export.ndjson
    verify_export.py --vectors docs/audit-log-vectors.json

Prints the report (section 9) as JSON; exits 0 when ok, 1 when not, 2 on
bad usage.
"""

import argparse
import base64
import calendar
import hashlib
import json
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

FORMATS = ("identity-audit-export/1", "identity-audit-export/2")
ERASED, REDACTED = "[erased]", "[redacted]"

# Section 6: where a marker may stand, by event type.
PERSONAL = {
    "user.registered": ["/payload/Registered/email", "/payload/Registered/display_name",
                        "/payload/Registered/password_hash"],
    "user.email_changed": ["/payload/EmailChanged/email", "/payload/EmailChanged/previous_email"],
    "user.display_name_changed": ["/payload/DisplayNameChanged/display_name"],
    "user.password_changed": ["/payload/PasswordChanged/password_hash"],
    "user.password_rehashed": ["/payload/PasswordRehashed/password_hash"],
    "user.login_failed": ["/payload/LoginFailed/ip"],
    "session.started": ["/payload/Started/ip", "/payload/Started/user_agent"],
}
PERSONAL_METADATA = ["/metadata/request_ip", "/metadata/user_agent"]
SECRETS = {
    "user.registered": ["/payload/Registered/password_hash"],
    "user.password_changed": ["/payload/PasswordChanged/password_hash"],
    "user.password_rehashed": ["/payload/PasswordRehashed/password_hash"],
    "session.started": ["/payload/Started/refresh_token_hash"],
    "session.refreshed": ["/payload/Refreshed/refresh_token_hash"],
}


class Broken(Exception):
    """The first place the proof fails (section 9)."""

    def __init__(self, reason, detail=None, event=None, expected=None, found=None,
                 global_position=None):
        super().__init__(reason)
        self.value = {
            "aggregate_type": event["aggregate_type"] if event else None,
            "aggregate_id": event["aggregate_id"] if event else None,
            "sequence": event["sequence"] if event else None,
            "global_position": event["global_position"] if event else global_position,
            "expected": expected, "found": found, "reason": reason, "detail": detail,
        }


# Section 3: f(x), SHA-256, times.

def f(text):
    data = text.encode("utf-8")
    return str(len(data)).encode("ascii") + b":" + data


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")


def nanos(text):
    """An RFC 3339 time as integer nanoseconds since the Unix epoch."""
    match = RFC3339.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    offset = 0 if zone in "Zz" else (int(zone[1:3]) * 60 + int(zone[4:6])) * 60 * (1 if zone[0] == "+" else -1)
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - offset
    return seconds * 10**9 + int(fraction.ljust(9, "0"))


def micros(text):
    return nanos(text) // 1000


def commitment(salt, value):
    return "sha256:" + sha256_hex(salt.encode("utf-8") + value.encode("utf-8"))


def event_hash(event, integrity):
    version = integrity.get("hash_version", 1)
    if version not in (1, 2):
        raise Broken("hash_mismatch", f"hash version {version} is not known", event)
    message = f"identity-event/{version}".encode("ascii") + f(integrity["prev_hash"])
    if version == 2:
        message += f(event["event_id"])
    for field in (event["aggregate_type"], event["aggregate_id"], str(event["sequence"]),
                  event["event_type"], event["event_version"], integrity["sealed"],
                  str(micros(event["recorded_at"]))):
        message += f(field)
    return sha256_hex(message)


def running_hash(previous, hash_, transaction_id, global_position):
    return sha256_hex(b"identity-log/1" + f(previous) + f(hash_)
                      + f(str(transaction_id)) + f(str(global_position)))


# Section 5: checkpoints and keys.

def key_id(public_key):
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def checkpoint_message(c):
    message = b"identity-checkpoint/1"
    for field in (str(c["transaction_id"]), str(c["global_position"]), c["running_hash"],
                  str(c["event_count"]), str(micros(c["created_at"])), c["key_id"]):
        message += f(field)
    return message


def verify_signature(c, keys):
    key = keys.get(c["key_id"])
    if key is None:
        raise Broken("bad_signature", f"signed by key {c['key_id']}, which is not among the public keys",
                     global_position=c["global_position"])
    try:
        key.verify(base64.b64decode(c["signature"], validate=True), checkpoint_message(c))
    except (InvalidSignature, ValueError):
        raise Broken("bad_signature", "the signature does not verify",
                     global_position=c["global_position"])


def read_public_keys(text):
    """SPKI PEM blocks, the JSON of GET /v1/audit/keys, or base64 lines."""
    found = []
    if text.lstrip().startswith("{"):
        found = [Ed25519PublicKey.from_public_bytes(base64.b64decode(k["public_key"], validate=True))
                 for k in json.loads(text)["keys"]]
    elif "BEGIN PUBLIC KEY" in text:
        for block in re.findall(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", text, re.S):
            found.append(serialization.load_pem_public_key(block.encode("ascii")))
    else:
        found = [Ed25519PublicKey.from_public_bytes(base64.b64decode(line))
                 for line in text.split() if line]
    keys = {key_id(key): key for key in found if isinstance(key, Ed25519PublicKey)}
    if not keys:
        raise ValueError("no Ed25519 public key could be read")
    return keys


# Section 2: the seal.

def same_literal(a, b):
    return type(a) is type(b) and a == b


def check_seal(visible, sealed, salts, path, markers):
    """Raises a (path, reason) pair where `visible` departs from `sealed`;
    collects (path, marker) for every leaf without a salt."""
    if isinstance(sealed, str):
        if not sealed.startswith("sha256:"):
            raise ValueError((path, "the sealed form holds no commitment"))
        if not isinstance(visible, str):
            raise ValueError((path, "is not the string that was sealed"))
        if isinstance(salts, str):
            if commitment(salts, visible) != sealed:
                raise ValueError((path, "does not match its commitment"))
        elif salts is None:
            if visible not in (ERASED, REDACTED):
                raise ValueError((path, "has no salt but is not erased"))
            markers.append((path, visible))
        else:
            raise ValueError((path, "has a malformed salt"))
    elif isinstance(sealed, dict):
        if not isinstance(visible, dict):
            raise ValueError((path or "/", "is not an object"))
        if set(visible) != set(sealed):
            raise ValueError((path or "/", "has other fields than were sealed"))
        for key, item in sealed.items():
            salt = salts.get(key) if isinstance(salts, dict) else None
            check_seal(visible[key], item, salt, f"{path}/{key}", markers)
    elif isinstance(sealed, list):
        if not isinstance(visible, list):
            raise ValueError((path, "is not an array"))
        if len(visible) != len(sealed):
            raise ValueError((path, "has another length than was sealed"))
        for index, (shown, item) in enumerate(zip(visible, sealed)):
            salt = salts[index] if isinstance(salts, list) and index < len(salts) else None
            check_seal(shown, item, salt, f"{path}/{index}", markers)
    elif not same_literal(visible, sealed):
        raise ValueError((path, "differs from what was sealed"))


def shown_metadata_agrees(shown, stored):
    """Section 1: each stored key shown with the same string (occurred_at:
    the same instant), keys not stored shown as null."""
    if not isinstance(shown, dict) or not isinstance(stored, dict):
        return False
    for key, value in shown.items():
        if value is None and key not in stored:
            continue
        if not isinstance(value, str) or not isinstance(stored.get(key), str):
            return False
        if value != stored[key]:
            try:
                if key != "occurred_at" or nanos(value) != nanos(stored[key]):
                    return False
            except ValueError:
                return False
    return all(key in shown for key in stored)


# The export, line by line (sections 1 to 8).

class Verifier:
    def __init__(self, keys, trusted):
        self.keys = keys
        self.trusted = trusted  # [{"checkpoint": ..., "matched": bool}], filled before the export is read
        self.report = {"ok": False, "events_checked": 0, "checkpoints_checked": 0,
                       "events_proven": 0, "unproven_tail": None, "trusted_checkpoints_matched": 0,
                       "filtered": None, "erasure_markers_unconfirmed": 0, "first_broken": None}
        self.whole = None
        self.lines = 0
        self.ended = None
        self.checkpoints = []  # the export's, in order, not yet passed
        self.running, self.count, self.last = "", 0, None
        self.newest_proven = None
        self.streams = {}       # (aggregate_type, aggregate_id) -> (sequence, hash)
        self.session_users = {}  # session id -> user id (session.started)
        self.erased_users = set()
        self.markers = []       # (event, path, user) whose user.erased is still to be seen
        self.broken = None

    def fail(self, broken):
        if self.broken is None:
            self.broken = broken.value

    def feed(self, text):
        self.lines += 1
        try:
            line = json.loads(text)
        except ValueError as error:
            raise Broken("malformed_line", f"line {self.lines}: not JSON ({error})")
        if not isinstance(line, dict):
            raise Broken("malformed_line", f"line {self.lines}: not a JSON object")
        if self.ended is not None:
            raise Broken("malformed_line", f"line {self.lines}: a line after the end line")
        if self.whole is None:
            header = line.get("export")
            if list(line) != ["export"] or not isinstance(header, dict) or header.get("format") not in FORMATS \
                    or not isinstance(header.get("filters"), dict):
                raise Broken("malformed_line", "the first line is not an export header of a known format")
            self.whole = header["filters"] == {}
            self.report["filtered"] = not self.whole
        elif list(line) == ["checkpoint"]:
            if self.report["events_checked"]:
                raise Broken("malformed_line", f"line {self.lines}: a checkpoint after the events")
            self.checkpoints.append(line["checkpoint"])
        elif list(line) == ["end"]:
            self.ended = line["end"]["events"]
        elif "export" in line:
            raise Broken("malformed_line", f"line {self.lines}: a second header")
        else:
            try:
                self.event(line)
            except Broken as broken:
                self.fail(broken)

    def event(self, event):
        self.report["events_checked"] += 1
        if self.broken is not None:
            return
        try:  # 8.4.1: the event hash (section 3)
            integrity = event["integrity"]
            position = (integrity["transaction_id"], event["global_position"])
            computed = event_hash(event, integrity)
        except (KeyError, TypeError, ValueError) as error:
            raise Broken("malformed_line", f"line {self.lines}: {error!r}")
        if computed != integrity["hash"]:
            raise Broken("hash_mismatch", None, event, computed, integrity["hash"])
        markers = []
        try:  # 8.4.2: the seal, against the stored metadata (2.3)
            sealed = json.loads(integrity["sealed"])
            visible = {"payload": event["payload"], "metadata": integrity["stored_metadata"]}
            check_seal(visible, sealed, integrity["salts"], "", markers)
        except ValueError as error:
            path, reason = error.args[0] if isinstance(error.args[0], tuple) else ("/", "the sealed form is not JSON")
            raise Broken("seal_mismatch", f"{path}: {reason}", event)
        # 8.4.3: what is shown is what is stored (1.4)
        if not shown_metadata_agrees(event["metadata"], integrity["stored_metadata"]):
            raise Broken("malformed_line", "the metadata shown is not the metadata stored", event)
        self.check_markers(event, markers)  # 8.4.4
        stream = (event["aggregate_type"], event["aggregate_id"])  # 8.4.5: the link (section 4)
        previous = self.streams.get(stream)
        if self.whole or previous is not None:
            expected_sequence, expected_prev = (previous[0] + 1, previous[1]) if previous else (1, "")
            gap_left_by_filter = not self.whole and event["sequence"] > expected_sequence
            if not gap_left_by_filter and (event["sequence"] != expected_sequence
                                           or integrity["prev_hash"] != expected_prev):
                raise Broken("broken_link", f"expected sequence {expected_sequence}", event,
                             expected_prev, integrity["prev_hash"])
        self.streams[stream] = (event["sequence"], integrity["hash"])
        if self.whole:  # 8.4.6: the running hash and checkpoints (5.4)
            self.fold(position, integrity["hash"])

    def check_markers(self, event, markers):
        """Section 6: a marker stands only where the service writes one."""
        event_type = event["event_type"]
        if event_type == "user.erased" and event["aggregate_type"] == "user":
            self.erased_users.add(event["aggregate_id"])
        if event_type == "session.started":
            started = event["payload"].get("Started", {})
            if isinstance(started.get("user_id"), str):
                self.session_users[event["aggregate_id"]] = started["user_id"]
        for path, marker in markers:
            if marker == REDACTED:
                if path not in SECRETS.get(event_type, []):
                    raise Broken("unexpected_erasure", f"{path}: [redacted] where no secret is", event)
                continue
            owner = {"user": event["aggregate_id"],
                     "session": self.session_users.get(event["aggregate_id"])}.get(event["aggregate_type"])
            if path in PERSONAL_METADATA:
                actor = event["integrity"]["stored_metadata"].get("actor_id")
                users = [actor]
                if actor is None or event["integrity"].get("hash_version", 1) == 1:
                    users.append(owner)
            elif path in PERSONAL.get(event_type, []):
                users = [owner]
            else:
                raise Broken("unexpected_erasure", f"{path}: [erased] where no personal value is", event)
            users = [user for user in users if isinstance(user, str)]
            if not users:
                raise Broken("unexpected_erasure", f"{path}: [erased], but no person it belongs to", event)
            self.markers.append((event, path, users))

    def fold(self, position, hash_):
        self.pass_checkpoints_before(position)
        self.running = running_hash(self.running, hash_, *position)
        self.count += 1
        self.last = position
        while self.checkpoints and self.position_of(self.checkpoints[0]) == position:
            checkpoint = self.checkpoints.pop(0)
            verify_signature(checkpoint, self.keys)
            if checkpoint["running_hash"] != self.running or checkpoint["event_count"] != self.count:
                raise Broken("checkpoint_mismatch",
                             f"{checkpoint['event_count']} events signed, {self.count} found up to here",
                             expected=checkpoint["running_hash"], found=self.running,
                             global_position=checkpoint["global_position"])
            self.report["checkpoints_checked"] += 1
            self.newest_proven = (position, self.count)
            for trusted in self.trusted:
                if trusted.get("matched") is None and self.position_of(trusted["checkpoint"]) == position:
                    trusted["matched"] = same_checkpoint(trusted["checkpoint"], checkpoint)

    def pass_checkpoints_before(self, position):
        if self.checkpoints:
            at = self.position_of(self.checkpoints[0])
            if at < position and at != self.last:
                raise Broken("checkpoint_event_missing", global_position=self.checkpoints[0]["global_position"])

    @staticmethod
    def position_of(checkpoint):
        return (checkpoint["transaction_id"], checkpoint["global_position"])

    def finish(self):
        if self.broken is None:
            try:
                self.finish_checks()
            except Broken as broken:
                self.fail(broken)
        report = self.report
        if self.whole:
            report["events_proven"] = self.newest_proven[1] if self.newest_proven else 0
            (tx, gp) = self.newest_proven[0] if self.newest_proven else (None, None)
            report["unproven_tail"] = {"after_transaction_id": tx, "after_global_position": gp,
                                       "events": report["events_checked"] - report["events_proven"]}
        report["trusted_checkpoints_matched"] = sum(1 for t in self.trusted if t.get("matched"))
        report["first_broken"] = self.broken
        report["ok"] = self.broken is None
        return report

    def finish_checks(self):
        if self.whole is None:
            raise Broken("malformed_line", "the export is empty")
        if self.ended is None:
            raise Broken("malformed_line", "the export has no end line: it was cut short")
        if self.ended != self.report["events_checked"]:
            raise Broken("malformed_line", "the end line counts another number of events")
        if self.whole:
            self.pass_checkpoints_before((float("inf"), float("inf")))
        for event, path, users in self.markers:
            if any(user in self.erased_users for user in users):
                continue
            if self.whole:
                raise Broken("unexpected_erasure", f"{path}: [erased], but the log holds no user.erased "
                                                   f"of {' or '.join(users)}", event)
            self.report["erasure_markers_unconfirmed"] += 1
        for trusted in self.trusted:
            if not trusted.get("matched"):
                raise Broken("trusted_checkpoint_missing",
                             "the export does not hold this trusted checkpoint unchanged",
                             global_position=trusted["checkpoint"].get("global_position"))


def same_checkpoint(a, b):
    fields = ("transaction_id", "global_position", "running_hash", "event_count", "key_id", "signature")
    return all(a.get(k) == b.get(k) for k in fields) and micros(a["created_at"]) == micros(b["created_at"])


def verify_lines(lines, keys, trusted_lines=()):
    trusted = []
    verifier = Verifier(keys, trusted)
    try:
        for text in trusted_lines:
            if text.strip():
                checkpoint = json.loads(text)["checkpoint"]
                verify_signature(checkpoint, keys)
                trusted.append({"checkpoint": checkpoint})
        for text in lines:
            if text.strip():
                verifier.feed(text)
    except Broken as broken:
        verifier.fail(broken)
    except (KeyError, TypeError, ValueError) as error:
        verifier.fail(Broken("malformed_line", f"line {verifier.lines}: {error!r}"))
    return verifier.finish()


# The test vectors (section 10).

def check_vectors(vectors):
    failures = []

    def expect(name, computed, expected):
        if computed != expected:
            failures.append({"vector": name, "expected": expected, "computed": computed})

    key = vectors["key"]
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key["seed_hex"]))
    public = private.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    expect("key.public_key_base64", base64.b64encode(raw).decode(), key["public_key_base64"])
    expect("key.key_id", key_id(public), key["key_id"])
    expect("key.public_key_pem", public.public_bytes(serialization.Encoding.PEM,
           serialization.PublicFormat.SubjectPublicKeyInfo).decode(), key["public_key_pem"])
    running = ""
    for index, vector in enumerate(vectors["events"]):
        name = f"events[{index}]"
        for c in vector["commitments"]:
            expect(f"{name}.commitments{c['path']}", commitment(c["salt"], c["value"]), c["commitment"])
        sealed = json.loads(vector["sealed"])
        for c in vector["commitments"]:
            node = sealed
            for step in c["path"].strip("/").split("/"):
                node = node[int(step)] if isinstance(node, list) else node[step]
            expect(f"{name}.sealed{c['path']}", node, c["commitment"])
        markers = []
        try:
            check_seal({"payload": vector["payload"], "metadata": vector["metadata"]}, sealed,
                       vector["salts"], "", markers)
        except ValueError as error:
            failures.append({"vector": f"{name}.seal", "error": str(error)})
        expect(f"{name}.recorded_at_micros", micros(vector["recorded_at"]), vector["recorded_at_micros"])
        computed = event_hash(vector, vector)
        expect(f"{name}.hash", computed, vector["hash"])
        running = running_hash(running, vector["hash"], vector["transaction_id"], vector["global_position"])
        expect(f"{name}.running_hash", running, vector["running_hash"])
    checkpoint = vectors["checkpoint"]
    message = checkpoint_message(checkpoint)
    expect("checkpoint.message_hex", message.hex(), checkpoint["message_hex"])
    expect("checkpoint.signature", base64.b64encode(private.sign(message)).decode(), checkpoint["signature"])
    expect("checkpoint.running_hash", running, checkpoint["running_hash"])
    keys = read_public_keys(key["public_key_pem"])
    export = verify_lines(vectors["export"], keys)
    if not export["ok"] or export["events_proven"] != len(vectors["events"]):
        failures.append({"vector": "export", "report": export})
    trusted = verify_lines(vectors["export"], keys, [json.dumps({"checkpoint": checkpoint})])
    if not trusted["ok"] or trusted["trusted_checkpoints_matched"] != 1:
        failures.append({"vector": "export with the checkpoint trusted", "report": trusted})
    return {"ok": not failures, "vectors": vectors["format"], "failures": failures}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--public-key", action="append", default=[],
                        help="SPKI PEM (api audit public-key), GET /v1/audit/keys JSON, or base64 lines")
    parser.add_argument("--trusted-checkpoints", help='lines of {"checkpoint": {...}} kept out of band')
    parser.add_argument("--vectors", help="check docs/audit-log-vectors.json instead of an export")
    parser.add_argument("export", nargs="?", help="the export (NDJSON); - for standard input")
    args = parser.parse_args()
    if args.vectors:
        with open(args.vectors, encoding="utf-8") as file:
            report = check_vectors(json.load(file))
    else:
        if not args.export or not args.public_key:
            parser.error("an export and --public-key are needed")
        keys = {}
        for path in args.public_key:
            with open(path, encoding="utf-8") as file:
                keys.update(read_public_keys(file.read()))
        trusted = []
        if args.trusted_checkpoints:
            with open(args.trusted_checkpoints, encoding="utf-8") as file:
                trusted = file.read().splitlines()
        if args.export == "-":
            report = verify_lines(sys.stdin, keys, trusted)
        else:
            with open(args.export, encoding="utf-8") as file:
                report = verify_lines(file, keys, trusted)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
