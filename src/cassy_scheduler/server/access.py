"""Who may call what: the roles, the one table from a method to the role it needs, and the
rules that turn a call's credentials into an identity and decide whether it may go on.

Pure: the gate (server/gate.py) reads the credentials off the call and applies these rules.
A method missing from the table needs the highest role, so a call added later is refused
until someone says who may make it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal


class Role(IntEnum):
    """Each role may do everything the ones below it may."""

    READER = 1  # the List calls, health, reflection, DescribeBackups, WhoAmI
    OPERATOR = 2  # + RegisterCluster, TakeBackup
    ADMIN = 3  # + RestoreBackup, DeleteBackup, ListAudit

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, label: str) -> Role:
        return cls[label.upper()]


_CASSY = "/rpc.Cassy/"
_BACKUPS = "/cassy_scheduler.v1.Backups/"
_ACCESS = "/cassy_scheduler.v1.Access/"

#: The role each method needs.
REQUIRED_ROLE: Mapping[str, Role] = {
    f"{_CASSY}ListClusters": Role.READER,
    f"{_CASSY}ListBackups": Role.READER,
    f"{_CASSY}ListRestoreStatuses": Role.READER,
    f"{_BACKUPS}DescribeBackups": Role.READER,
    f"{_ACCESS}WhoAmI": Role.READER,
    "/grpc.health.v1.Health/Check": Role.READER,
    "/grpc.health.v1.Health/Watch": Role.READER,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.READER,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Role.READER,
    f"{_CASSY}RegisterCluster": Role.OPERATOR,
    f"{_CASSY}TakeBackup": Role.OPERATOR,
    f"{_CASSY}RestoreBackup": Role.ADMIN,
    f"{_BACKUPS}DeleteBackup": Role.ADMIN,
    f"{_ACCESS}ListAudit": Role.ADMIN,
}

#: The calls that change something: each is recorded in the audit log, allowed or not.
#: (rpc.Admin's Pause and Unpause are served by applications, not by this server.)
AUDITED: frozenset[str] = frozenset(
    {
        f"{_CASSY}RegisterCluster",
        f"{_CASSY}TakeBackup",
        f"{_CASSY}RestoreBackup",
        f"{_BACKUPS}DeleteBackup",
    }
)

#: Of those, the ones an operator should hear about even when they succeed.
WARNED: frozenset[str] = frozenset({f"{_CASSY}RestoreBackup", f"{_BACKUPS}DeleteBackup"})


def required_role(method: str) -> Role:
    return REQUIRED_ROLE.get(method, Role.ADMIN)


def call_name(method: str) -> str:
    """'/rpc.Cassy/TakeBackup' -> 'TakeBackup'."""
    return method.rsplit("/", 1)[-1]


def token_digest(token: str) -> str:
    """What the server keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role


@dataclass(frozen=True)
class Refusal:
    """Why a call may not go on; `kind` becomes UNAUTHENTICATED or PERMISSION_DENIED."""

    kind: Literal["unauthenticated", "denied"]
    message: str


#: What an identity is when no identities are configured: the server lets every call through.
ANYONE = Identity("", Role.ADMIN)


@dataclass(frozen=True)
class Credentials:
    """The configured identities, by token digest and by client certificate name."""

    tokens: Mapping[str, Identity] = field(default_factory=dict)
    certificates: Mapping[str, Identity] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.certificates)

    def identify(self, authorization: str | None, cert_names: Sequence[str]) -> Identity | Refusal:
        """A bearer token, when sent, decides alone (a wrong one is never rescued by a
        certificate); otherwise the identity the certificate's names map to, refused when
        they map to more than one."""
        if not self.enabled:
            return ANYONE
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return Refusal(
                    "unauthenticated", "send the token as 'authorization: Bearer <token>'"
                )
            found = self.tokens.get(token_digest(token))
            if found is None:
                return Refusal("unauthenticated", "the bearer token matches no identity")
            return found
        matched = {
            self.certificates[n].name: self.certificates[n]
            for n in cert_names
            if n in self.certificates
        }
        if len(matched) > 1:  # which one was meant is not for the server to guess
            return Refusal(
                "unauthenticated",
                f"the client certificate ({', '.join(cert_names)}) maps to more than one "
                f"identity ({', '.join(sorted(matched))}): give each identity its own name",
            )
        if matched:
            return next(iter(matched.values()))
        if cert_names:
            return Refusal(
                "unauthenticated",
                f"the client certificate ({', '.join(cert_names)}) maps to no identity",
            )
        return Refusal(
            "unauthenticated",
            "this server admits only known identities: send 'authorization: Bearer <token>' "
            "or a client certificate",
        )


def authorize(identity: Identity, method: str) -> Refusal | None:
    """None when `identity` may call `method`."""
    needed = required_role(method)
    if identity.role >= needed:
        return None
    return Refusal(
        "denied",
        f"{call_name(method)} needs the {needed.label} role; "
        f"identity {identity.name!r} has {identity.role.label}",
    )
