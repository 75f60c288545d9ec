"""Fixtures of the security tests (issue 11): certificate authorities, fleet files with a TLS mode,
deployments put straight into the phase a test is about."""
from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from bgqueue.sandbox.tls import CertificateAuthority
from tests.fixtures.bgq import write_fleet

_files = itertools.count(1)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    """The CA the fleet file trusts."""
    return CertificateAuthority.create(tmp_path / "ca", "bgqueue test CA")


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    """A CA nobody trusts: what an impostor's certificate is signed by."""
    return CertificateAuthority.create(tmp_path / "other-ca", "impostor CA")


@pytest.fixture
def tls_fleet(tmp_path: Path) -> Callable[..., Path]:
    """``make(pairs, tls, **thresholds)``: a fleet file for sandbox pairs whose clusters all say ``tls``."""

    def make(pairs, tls, **thresholds) -> Path:
        path = write_fleet(tmp_path / f"tls-fleet{next(_files)}.yaml", pairs, **thresholds)
        data = yaml.safe_load(path.read_text())
        for c in data["clusters"]:
            c["tls"] = tls
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


def put_in_phase(runtime, path: Path, phase: str) -> str:
    """A deployment of the fleet's first cluster put straight into ``phase`` (what comes before is
    not what these tests are about), its route pointing at blue."""
    from bgqueue.adapters.store.models import Deployment
    from bgqueue.engine.batches import open_batch
    from bgqueue.model.fleet import load_fleet

    spec = load_fleet(path).clusters[0]
    dep_id = open_batch(runtime, str(path)).deployments[spec.name]
    runtime.routing.init(spec.name, spec.blue.host, spec.blue.port)
    with runtime.store.session() as s:
        s.execute(update(Deployment).where(Deployment.id == dep_id).values(phase=phase))
    return dep_id
