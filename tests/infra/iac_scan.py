"""The IaC scan of `make infra-test`: checkov on every template, with zero unexplained failures.

    python tests/infra/iac_scan.py PATH/TO/checkov

It scans, in one checkov run (suppressions only in each resource's metadata, none on the command line):

- infra/template.yaml and infra/dms.yaml as they are (what a security team's scanner sees);
- the main template rendered with every optional resource (Kafka sources, the CDC key ledger...), since checkov
  skips resources whose condition is false on the defaults and does not evaluate !If (nor runs its IAM policy
  checks on a role with a conditional statement); infra/dms.yaml rendered with the customer key;
- the same with DataKmsKeyArn and AccessLogBucket set, without the suppressions those parameters lift: the key,
  encryption and logging checks must pass for real;
- a control: the same without those parameters nor those suppressions, which must fail exactly those checks (so a
  pass above is the parameters' doing, not the scanner's blind spot).

Exit status 1 on any failed check outside the control, a suppression without a reason, or a control that does not
fail as expected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import template_checks as checks

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "infra").glob("*.yaml"))

LIFTED_BY_PARAMETERS = ("DataKmsKeyArn", "AccessLogBucket")
SAMPLE_STREAM = "arn:aws:kinesis:us-east-1:111122223333:stream/mdm-sync-dev-CdcStream-AbCdEf"


def variants(template: dict, dms: dict) -> dict[str, tuple[dict, set[tuple[str, str]]]]:
    """Rendered copies of the templates to scan: name -> (template, findings it must fail). checkov evaluates no
    IAM policy check on a role one of whose statements is an !If (the customer-key grants): the renderings are
    where those roles' policies are checked."""
    every = checks.render(template, checks.EVERY_RESOURCE)
    secured = checks.render(template, {**checks.WITH_DATA_KEY, **checks.WITH_ACCESS_LOGS})
    render_only = checks.lifted_by("render")
    by_parameters = checks.lifted_by(*LIFTED_BY_PARAMETERS)
    control = checks.without_suppressions(every, render_only | by_parameters)
    expected = {
        (cid, lid)
        for lid, r in control["Resources"].items()
        for cid in by_parameters
        if r.get("Type") in checks.ACCEPTED_FINDINGS[cid][0]
    }
    return {
        "template.every-resource.json": (checks.without_suppressions(every, render_only), set()),
        "template.data-key-and-access-logs.json": (checks.without_suppressions(secured, render_only | by_parameters), set()),
        "template.control.json": (control, expected),
        "dms.data-key.json": (checks.render(dms, {"DataKmsKeyArn": checks.SAMPLE_DATA_KEY, "StreamArn": SAMPLE_STREAM}), set()),
    }


def checkov_command(checkov: str, directory: str) -> list[str]:
    # Nothing is skipped or softened here: every accepted finding is a suppression in the resource's metadata.
    # --skip-download: no call to the vendor's platform (guidelines, custom policies); the checks are the
    # package's own.
    return [checkov, "--directory", directory, "--framework", "cloudformation", "--output", "json", "--skip-download"]


def run_checkov(checkov: str, files: dict[str, object]) -> dict:
    with tempfile.TemporaryDirectory(prefix="iac-scan-") as tmp:
        for name, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, Path(tmp) / name)
            else:
                (Path(tmp) / name).write_text(json.dumps(content, indent=1))
        env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
        out = subprocess.run(checkov_command(checkov, tmp), capture_output=True, text=True, env=env, cwd=tmp)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"checkov gave no JSON report (exit {out.returncode})")
    reports = report if isinstance(report, list) else [report]
    return next(r for r in reports if r.get("check_type") == "cloudformation")


def per_file(report: dict) -> dict[str, dict[str, list[dict]]]:
    out: dict[str, dict[str, list[dict]]] = {}
    for outcome in ("passed_checks", "failed_checks", "skipped_checks"):
        for c in report.get("results", {}).get(outcome, []):
            name = Path(c["file_path"]).name
            out.setdefault(name, {"passed_checks": [], "failed_checks": [], "skipped_checks": []})[outcome].append(c)
    return out


def resource_id(check: dict) -> str:
    """"AWS::SQS::Queue.EventQueue" -> "EventQueue"."""
    return check["resource"].rsplit(".", 1)[-1]


def judge(results: dict[str, dict[str, list[dict]]], expected: dict[str, set[tuple[str, str]]]) -> tuple[list[str], list[str]]:
    """(summary lines, problems) of a scan: every file scanned, no failure but the expected ones, each expected one
    failing, every suppression with its reason."""
    lines, problems = [], []
    for name, want in expected.items():
        r = results.get(name)
        if r is None:
            problems.append(f"{name}: checkov scanned nothing (not read as CloudFormation?)")
            continue
        failed = {(c["check_id"], resource_id(c)) for c in r["failed_checks"]}
        for c in r["failed_checks"]:
            if (c["check_id"], resource_id(c)) not in want:
                problems.append(f"{name}: unexplained failure {c['check_id']} ({c['check_name']}) on {c['resource']}")
        missing = want - failed
        if missing:
            problems.append(f"{name}: expected to fail without the parameters, but passed: {sorted(missing)}")
        for c in r["skipped_checks"]:
            if not ((c.get("check_result") or {}).get("suppress_comment") or "").strip():
                problems.append(f"{name}: {c['check_id']} skipped on {c['resource']} without a reason")
        note = f"; fails as expected: {len(failed & want)} findings of {sorted({cid for cid, _ in want})}" if want else ""
        lines.append(
            f"  {name:42} passed {len(r['passed_checks']):3}  failed {len(r['failed_checks']):3}  "
            f"skipped {len(r['skipped_checks']):3} (each with its reason){note}"
        )
    return lines, problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    checkov = str(Path(argv[1]).resolve()) if os.sep in argv[1] else argv[1]
    version = subprocess.run([checkov, "--version"], capture_output=True, text=True).stdout.strip()
    template = checks.load(ROOT / "infra" / "template.yaml")
    dms = checks.load(ROOT / "infra" / "dms.yaml")
    files: dict[str, object] = {p.name: p for p in TEMPLATES}
    expected: dict[str, set[tuple[str, str]]] = {p.name: set() for p in TEMPLATES}
    for name, (content, want) in variants(template, dms).items():
        files[name] = content
        expected[name] = want
    lines, problems = judge(per_file(run_checkov(checkov, files)), expected)
    print(f"IaC scan, checkov {version}:")
    print("\n".join(lines))
    for p in problems:
        print(f"  PROBLEM {p}")
    print("IaC scan: " + ("no unexplained failures" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
