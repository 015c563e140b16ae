#!/usr/bin/env python3
"""Rebuilds the committed seed corpus (fuzz/seeds/<target>/) from the project's fixtures and
policy files. Run from anywhere; needs PyYAML. Seeds are named by the file they came from.

- config:      each fixture's plugin configuration as JSON, with its policyFiles appended
- fixture:     each fixture file as written
- policy_file: each policy file as written
- decide:      no seeds (its input is a structured description libFuzzer grows by itself)
"""
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def seed_name(path):
    return os.path.relpath(path, ROOT).replace(os.sep, "__")


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def policies_of(path):
    out = []
    for doc in load_all(path):
        items = doc.get("items", []) if doc.get("kind") == "List" else [doc]
        out += [i for i in items if isinstance(i, dict) and i.get("kind") == "AuthorizationPolicy"]
    return out


def main():
    fixtures = []
    for base in ("tests/fixtures", "policies"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, base)):
            for f in sorted(files):
                if f.endswith((".yaml", ".yml", ".json")):
                    fixtures.append(os.path.join(dirpath, f))
    for path in sorted(fixtures):
        with open(path, "rb") as f:
            raw = f.read()
        try:
            docs = load_all(path)
        except yaml.YAMLError:
            continue
        fixture = docs[0] if len(docs) == 1 and isinstance(docs[0], dict) else None
        if fixture is not None and "cases" in fixture:
            write("fixture", seed_name(path), raw)
            here = os.path.dirname(path)
            config = fixture.get("config")
            if config is None and "configFile" in fixture:
                config = load_all(os.path.join(here, fixture["configFile"]))[0]
            if not isinstance(config, dict):
                continue
            config = dict(config)
            policies = list(config.get("policies") or [])
            for p in fixture.get("policyFiles") or []:
                policies += policies_of(os.path.join(here, p))
            config["policies"] = policies
            write("config", seed_name(path) + ".json", json.dumps(config).encode())
        elif any(isinstance(d, dict) and d.get("kind") in ("AuthorizationPolicy", "List") for d in docs):
            write("policy_file", seed_name(path), raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
