#!/usr/bin/env python3
"""Writes the shipped alert rules with every time constant divided by the lab's time scale.

  scale_rules.py IN.yaml OUT.yaml SCALE

The lab runs SCALE times faster than the platform (timeouts and intervals divided by SCALE), so
the rules' `for:` clauses, range windows and thresholds in seconds are divided too; counts (more
than 50 failing) stay. The expressions are otherwise the shipped ones. A threshold this script
does not know makes it fail, so a changed rule file is never scaled silently wrong.
"""

import re
import sys

import yaml

# Thresholds in seconds inside expressions, per alert: (text in the shipped rule, seconds).
SECOND_THRESHOLDS = {
    "FluxGitRepositoryStarvation": [(") > 900", 900)],
    "FluxGitRepositoryFirstReconcileSlow": [(") > 300", 300)],
    "FluxLaneStarvation": [(") > 3600", 3600)],
}
# Left alone: certificate lifetimes are not part of the lab's clock.
UNSCALED = {"FluxgateWebhookCertificateExpiring"}

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text):
    total = 0
    for n, u in re.findall(r"(\d+)([smhd])", text):
        total += int(n) * UNITS[u]
    return total


def fmt(sec):
    # Prometheus durations take whole milliseconds at best; keep to seconds.
    return f"{max(1, round(sec))}s"


def scale_rule(rule, k):
    name = rule.get("alert", "")
    if "for" in rule and name not in UNSCALED:
        rule["for"] = fmt(seconds(rule["for"]) / k)
    if name in UNSCALED:
        return
    expr = rule["expr"]
    expr = re.sub(r"\[(\d+[smhd])\]", lambda m: "[" + fmt(seconds(m.group(1)) / k) + "]", expr)
    for text, sec in SECOND_THRESHOLDS.get(name, []):
        if text not in expr:
            sys.exit(f"scale_rules: {name}: expected '{text}' in its expression; update lab/scale_rules.py")
        expr = expr.replace(text, text.replace(str(sec), fmt(sec / k)[:-1]))
    rule["expr"] = expr
    if name:
        rule.setdefault("labels", {})["lab_scale"] = str(k)


def main():
    src, dst, k = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with open(src) as f:
        doc = yaml.safe_load(f)
    seen = set()
    for group in doc["groups"]:
        for rule in group["rules"]:
            scale_rule(rule, k)
            seen.add(rule.get("alert"))
    missing = set(SECOND_THRESHOLDS) - seen
    if missing:
        sys.exit(f"scale_rules: rules not found: {sorted(missing)}")
    with open(dst, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False, width=120)


if __name__ == "__main__":
    main()
