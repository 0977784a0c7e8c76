"""What is new since production: a scheduled retraining run compares the data it resolved (md5) and the code it
runs with the lineage of the production version, and trains only when one of them changed (or when forced), so a
nightly schedule spends no GPU hours on the model it already has."""

from __future__ import annotations

from dataclasses import dataclass

from mug.lineage import code_version


@dataclass(frozen=True)
class Change:
    retrain: bool
    status: str  # one line for the run's log and summary
    trigger: str  # what set the run off, for the new version's lineage ("" when it does not retrain)


def _revision(lineage: dict[str, str]) -> str:
    """The data's commit, after the ref it was asked by (a tag, a branch) when it came by DVC address."""
    revision = lineage.get("data_revision", "unknown")
    return f"{lineage['data_ref']} ({revision})" if lineage.get("data_ref") else revision


def _data(lineage: dict[str, str]) -> str:
    return f"{lineage.get('data_md5', 'unknown')} at {_revision(lineage)}"


def since_production(
    data: dict[str, str], name: str, uri: str | None = None, force: bool = False, code: str | None = None
) -> Change:
    """Compare `data` (the validated dataset's lineage: data_md5, data_revision, data_ref when addressed by DVC)
    and `code` (default: this package's `code_version`) with what production was trained on."""
    from mug.registry import production_lineage

    code = code or code_version()
    production = production_lineage(name, uri)
    if production is None:
        return Change(True, f"retrain: {name} has no production version to compare with", "no production version")
    version, trained = production
    news, causes = [], []
    if data.get("data_md5") != trained.get("data_md5"):
        news.append(f"data {_data(data)} (production v{version}: {_data(trained)})")
        causes.append(f"data {_revision(data)}")
    if code != trained.get("code_version"):
        news.append(f"code {code} (production v{version}: {trained.get('code_version', 'unknown')})")
        causes.append(f"code {code}")
    if news:
        return Change(True, "retrain: new " + "; new ".join(news), "; ".join(causes))
    same = f"data {_data(data)} and code {code} are what it was trained on"
    if force:
        return Change(True, f"retrain (forced): nothing new since production v{version}: {same}", "forced")
    return Change(False, f"nothing new since production v{version}: {same}; force=True retrains anyway", "")
