"""Certificates for mutual TLS: a cluster CA and one certificate per node name.

A set is a directory (0700) of PEM files: ``ca.crt`` (the cluster CA's certificate)
and, for every node, ``NAME.crt`` (common name and DNS name = the node name, plus any
host names or IP addresses given) and ``NAME.key`` (0600). Every certificate is signed
by the CA and serves both as a server's and as a client's; a peer proves the node name
in it, and the node name is what the receiver's trust rules (:mod:`actorml.trust`)
compare with the sender an envelope claims.

Keys are EC P-256: nng's mbedTLS refuses Ed25519 certificates. The CA's key is never
written: ``actorml certs`` makes a complete set at once (make a fresh set to add a
node), and the launcher keeps the key of its per-run CA in memory only, to certify a
node added while the cluster runs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import CredentialsError
from .messages import LAUNCHER_NODE
from .topology import Topology
from .transport import TLSCredentials

__all__ = [
    "CA_CERT",
    "Authority",
    "CertificateSet",
    "NodeFiles",
    "cluster_hosts",
    "for_cluster",
    "user_set",
    "write_set",
]

CA_CERT = "ca.crt"
_SKEW = datetime.timedelta(hours=1)  # hosts' clocks disagree a little


_CA_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@attrs.define(eq=False, repr=False)
class Authority:
    """A cluster CA: its key (held in memory only) and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    days: int = 365

    @classmethod
    def new(cls, name: str = "actorml cluster CA", days: int = 365) -> Authority:
        """A fresh CA, valid for ``days`` days."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _SKEW)
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, days)

    @property
    def cert_pem(self) -> bytes:
        return _pem(self.cert)

    def issue(self, name: str, hosts: Iterable[str] = ()) -> tuple[bytes, bytes]:
        """A certificate for node ``name`` and its key, both PEM: (cert, key).

        Args:
            name: the node name, the certificate's common name and first DNS name.
            hosts: more names for it: IP addresses become IP SANs, the rest DNS SANs.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = [x509.DNSName(name)]
        for host in dict.fromkeys(hosts):
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                if host != name:
                    alt.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _SKEW)
            .not_valid_after(_now() + datetime.timedelta(days=self.days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return _pem(cert), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite a file of another set; the mode is set at creation, so a
    # key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@attrs.frozen
class NodeFiles:
    """Where one node's TLS files are: the CA's certificate, its own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def load(self, key: str = "cluster.tls_dir") -> TLSCredentials:
        """Read the three files.

        Args:
            key: the setting that named them, for the error message.

        Raises:
            CredentialsError: a file is missing or unreadable (one line naming it,
                ``key`` and the fix).
        """
        texts = []
        for path in (self.ca, self.cert, self.key):
            try:
                texts.append(path.read_text(encoding="ascii"))
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not a PEM file"
                raise CredentialsError(
                    f"{key}: cannot read {str(path)!r} ({(why or str(exc)).lower()}); "
                    "make a set with `actorml certs DIR --topology FILE`"
                ) from None
        return TLSCredentials(ca=texts[0], cert=texts[1], key=texts[2])


@attrs.define(eq=False)
class CertificateSet:
    """A directory of certificates as :func:`write_set` makes them.

    Args:
        directory: the set's directory.
        authority: its CA, when held (the launcher's per-run set): a node without a
            certificate yet is then certified on demand.
    """

    directory: Path
    authority: Authority | None = None

    def files(self, name: str) -> NodeFiles:
        """Node ``name``'s files (certified now if the set's CA is at hand and it has none)."""
        files = NodeFiles(
            self.directory / CA_CERT, self.directory / f"{name}.crt", self.directory / f"{name}.key"
        )
        if self.authority is not None and not files.cert.exists():
            _write_node(self.directory, self.authority, name, ())
        return files


def _write_node(directory: Path, authority: Authority, name: str, hosts: Iterable[str]) -> None:
    cert, key = authority.issue(name, hosts)
    _write(directory / f"{name}.key", key, 0o600)
    _write(directory / f"{name}.crt", cert, 0o644)


def write_set(
    directory: Path,
    names: Iterable[str],
    *,
    authority: Authority | None = None,
    hosts: dict[str, tuple[str, ...]] | None = None,
) -> CertificateSet:
    """Make a CA (unless given) and a certificate and key for each node name in ``directory``.

    Args:
        directory: created with mode 0700; it must not exist or be empty.
        names: the node names (include ``_launcher`` for the launcher).
        authority: the CA to sign with; a fresh one by default.
        hosts: node name -> more host names or IP addresses for its certificate
            (key ``"*"``: for every node).

    Returns:
        The set (holding the CA only if ``authority`` was given).

    Raises:
        FileExistsError: ``directory`` holds files already.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"directory {str(directory)!r} is not empty")
    directory.chmod(0o700)
    ca = authority if authority is not None else Authority.new()
    _write(directory / CA_CERT, ca.cert_pem, 0o644)
    hosts = hosts or {}
    for name in dict.fromkeys(names):
        _write_node(directory, ca, name, (*hosts.get("*", ()), *hosts.get(name, ())))
    return CertificateSet(directory, authority)


def cluster_hosts(topology: Topology) -> dict[str, tuple[str, ...]]:
    """The host names and addresses each node's certificate should name besides its
    node name: the cluster's ``host`` for all, and the host of a node's own address."""
    hosts: dict[str, tuple[str, ...]] = {"*": (topology.cluster.host,)}
    for node in topology.nodes:
        if node.address and "://" in node.address:
            host = node.address.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
            if host:
                hosts[node.name] = (host,)
    return hosts


def user_set(topology: Topology) -> CertificateSet | None:
    """The set in ``[cluster] tls_dir`` (None if not set), every file the launcher and
    the nodes it starts need checked readable (a node on another host reads its own
    files there).

    Raises:
        CredentialsError: one is missing or unreadable.
    """
    cluster = topology.cluster
    if not cluster.tls or cluster.tls_dir is None:
        return None
    certs = CertificateSet(Path(cluster.tls_dir))
    local = [n.name for n in topology.nodes if not topology.remote(n.name)]
    for name in [LAUNCHER_NODE, *local]:
        certs.files(name).load()
    return certs


def for_cluster(topology: Topology, private_dir: Path) -> CertificateSet | None:
    """The certificates a cluster's pipes use, or None if they are not TLS.

    With ``[cluster] tls_dir``, the user's set there, every node's files (and the
    launcher's) checked readable; without, a new set for this run in
    ``private_dir/tls``, whose CA stays in memory to certify nodes added later.

    Raises:
        CredentialsError: a file of ``tls_dir`` is missing or unreadable.
    """
    if not topology.cluster.tls:
        return None
    given = user_set(topology)
    if given is not None:
        return given
    names = [LAUNCHER_NODE, *(n.name for n in topology.nodes)]
    return write_set(
        private_dir / "tls", names, authority=Authority.new(), hosts=cluster_hosts(topology)
    )
