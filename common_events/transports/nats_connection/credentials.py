"""What a ``.creds`` file or an NKey seed file holds, checked without ever showing it.

nats-py reads these files itself, on every connect and reconnect (so a file rotated in
place is picked up by the next reconnect). They are read here once more before the first
connection, so that a file that cannot work fails with a sentence that says why instead
of a refusal without a reason, or a hang (nats-py reads a ``.creds`` file without a JWT
line for ever). When the server refuses them, ``refusal_hint()`` says what to check.

Nothing read from a file ever goes into a message: only its path, the user's name, the
JWT's dates and public keys, none of which is a secret.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from common_events.errors import AuthenticationError, ConfigurationError

logger = logging.getLogger(__name__)

_JWT_BEGIN = b"BEGIN NATS USER JWT"
_SEED_BEGIN = b"BEGIN USER NKEY SEED"
# An encoded NKey seed: 'S', the key type's letter, base32 (58 characters for ed25519).
_SEED = re.compile(r"S[UAONC][A-Z2-7]{50,}")
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
_INSTALL = "pip install 'common-events[nkeys]'"


def looks_like_secret(value: object) -> bool:
    """Whether a value given where a *path* belongs is a seed or a JWT itself.

    Handing one to nats-py as a path would put it into a "file not found" error.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    return bool(_SEED.fullmatch(text) or _JWT.search(text) or "-----BEGIN" in text)


def _nkeys() -> ModuleType:
    try:
        return importlib.import_module("nkeys")
    except ImportError:
        raise ConfigurationError(
            f"creds_file and nkeys_seed need the nkeys package: {_INSTALL}"
        ) from None


@dataclass(frozen=True, slots=True)
class UserKey:
    """The public facts of a user credential: enough to explain a refusal."""

    path: Path
    kind: str
    """``"credentials file"`` (a JWT and its seed) or ``"NKey seed file"``."""
    public_key: str
    """The user's public NKey (``U...``), derived from the seed."""
    name: str | None = None
    """The user's name in the JWT (``nsc add user <name>``)."""
    expires: datetime | None = None
    not_before: datetime | None = None

    def refusal_hint(self, now: datetime | None = None) -> str:
        """What to check once a server refused this credential."""
        now = now or datetime.now(UTC)
        where = f"check the {self.kind} {self.path}"
        if self.kind == "NKey seed file":
            return (
                f"{where}: the server must list its public key {self.public_key} among "
                "its authorization users"
            )
        user = f"user {self.name!r}" if self.name else f"user {self.public_key}"
        if self.expires is not None and self.expires <= now:
            return (
                f"{where}: the JWT of {user} expired at {_when(self.expires)}; issue a new "
                "one (nsc edit user --expiry, then nsc generate creds)"
            )
        if self.not_before is not None and self.not_before > now:
            return f"{where}: the JWT of {user} is not valid before {_when(self.not_before)}"
        return (
            f"{where}: {user} may have been revoked, or its account is unknown to the "
            "server (is the account JWT in the server's resolver, signed by its operator?)"
        )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path: Path, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise AuthenticationError(
            f"the {kind} {path} cannot be read ({error.strerror or type(error).__name__}): "
            "check the path and its permissions"
        ) from None


def _line_after(content: bytes, marker: bytes) -> bytes | None:
    """The line after the one holding ``marker``, as nats-py reads a ``.creds`` file."""
    lines = content.splitlines()
    for index, line in enumerate(lines):
        if marker in line:
            following = lines[index + 1].strip() if index + 1 < len(lines) else b""
            return following or None
    return None


def _public_key(seed: bytes, path: Path, kind: str) -> str:
    nkeys = _nkeys()
    try:
        key_pair: Any = nkeys.from_seed(bytearray(seed))
        public = bytes(key_pair.public_key).decode()
        key_pair.wipe()
    except Exception:
        # The library's messages are generic; they never hold the seed, but say nothing
        # of it either way: a bad seed is a bad seed.
        raise AuthenticationError(
            f"the {kind} {path} holds no valid user NKey seed: regenerate it "
            "(nsc generate creds, or nsc generate nkey --user for a seed file)"
        ) from None
    if not public.startswith("U"):
        raise AuthenticationError(
            f"the {kind} {path} holds a seed that is not a user's (its public key starts "
            f"with {public[:1]!r}); use the seed of a user"
        )
    return public


def _claims(token: bytes, path: Path) -> dict[str, Any]:
    parts = token.split(b".")
    try:
        if len(parts) != 3:
            raise ValueError
        payload = parts[1] + b"=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        if not isinstance(claims, dict):
            raise ValueError
    except (ValueError, binascii.Error):
        raise AuthenticationError(
            f"the credentials file {path} holds a user JWT that cannot be decoded: "
            "regenerate it with nsc generate creds"
        ) from None
    return claims


def _moment(value: object) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def read_creds_file(path: str | Path) -> UserKey:
    """Check that ``path`` is a NATS ``.creds`` file whose seed belongs to its JWT."""
    path = Path(path)
    kind = "credentials file"
    content = _read(path, kind)
    token = _line_after(content, _JWT_BEGIN)
    seed = _line_after(content, _SEED_BEGIN)
    if token is None:
        hint = (
            "it looks like an NKey seed file: pass it as nkeys_seed"
            if seed is None and _SEED.fullmatch(content.strip().decode(errors="replace"))
            else "make one with nsc generate creds"
        )
        raise AuthenticationError(f"the {kind} {path} holds no user JWT: {hint}")
    if seed is None:
        raise AuthenticationError(
            f"the {kind} {path} holds no user NKey seed: make it with nsc generate creds"
        )
    claims = _claims(token, path)
    public = _public_key(seed, path, kind)
    nats_claims = claims.get("nats")
    if isinstance(nats_claims, dict) and nats_claims.get("type") not in (None, "user"):
        raise AuthenticationError(
            f"the {kind} {path} holds a {nats_claims.get('type')} JWT, not a user's"
        )
    name = claims.get("name")
    if claims.get("sub") != public:
        raise AuthenticationError(
            f"the seed in the {kind} {path} does not belong to its user JWT"
            + (f" (user {name!r})" if isinstance(name, str) else "")
            + ": both must come from one nsc generate creds"
        )
    return UserKey(
        path=path,
        kind=kind,
        public_key=public,
        name=name if isinstance(name, str) else None,
        expires=_moment(claims.get("exp")),
        not_before=_moment(claims.get("nbf")),
    )


def read_seed_file(path: str | Path) -> UserKey:
    """Check that ``path`` holds a user's NKey seed and nothing else (as nats-py reads it)."""
    path = Path(path)
    kind = "NKey seed file"
    content = _read(path, kind).strip()
    if _JWT_BEGIN in content:
        raise AuthenticationError(
            f"the {kind} {path} is a .creds file (it holds a user JWT): pass it as creds_file"
        )
    return UserKey(path=path, kind=kind, public_key=_public_key(content, path, kind))
