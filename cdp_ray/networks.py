"""Stellar network names and their passphrases."""

from __future__ import annotations

import hashlib

PASSPHRASES: dict[str, str] = {
    "pubnet": "Public Global Stellar Network ; September 2015",
    "testnet": "Test SDF Network ; September 2015",
    "futurenet": "Test SDF Future Network ; October 2022",
}


def resolve_passphrase(network: str) -> str:
    """A network name (pubnet/testnet/futurenet) or a literal passphrase -> passphrase."""
    return PASSPHRASES.get(network.lower(), network)


def network_id(passphrase: str) -> bytes:
    """sha256 of the passphrase: the prefix of every transaction hash preimage."""
    return hashlib.sha256(passphrase.encode()).digest()
