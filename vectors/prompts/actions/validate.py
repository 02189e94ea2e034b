#!/usr/bin/env python3
"""Check the action-risk pair files and print counts per kind x vocabulary.

Usage: python3 vectors/prompts/actions/validate.py [--markdown]
Exits non-zero on the first structural problem.
"""
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = ["destroys_data", "bypasses_checks", "tampers_tests_or_results", "disables_safety",
         "touches_production", "moves_money", "irreversible"]
VOCABS = ["shell", "git", "sql", "http", "config-flags", "ci-files", "test-files",
          "robot-device", "finance", "data-pipelines"]
# Evaluative words that would let a direction learn the label instead of the action.
GIVEAWAYS = re.compile(r"\b(dangerous|unsafe|hack\w*|risky|malicious|reckless|yolo)\b", re.I)


def split_action(text, where):
    tool, sep, args = text.partition(" ")
    assert sep and tool and "\n" not in text, f"{where}: not '<tool> <json>' on one line"
    parsed = json.loads(args)
    # limbic renders serde_json::Value: compact, keys sorted, UTF-8 unescaped.
    canon = json.dumps(parsed, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    assert args == canon, f"{where}: args not in limbic's rendering"
    return tool, parsed


def main():
    counts = {k: {v: 0 for v in VOCABS} for k in KINDS}
    seen_text = {}
    ratios = []
    for kind in KINDS:
        path = HERE / f"{kind}.jsonl"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.name}:{n}"
            row = json.loads(line)
            assert set(row) == {"id", "vocabulary", "risky", "benign"}, f"{where}: keys {sorted(row)}"
            assert row["id"] == f"{kind}-{n:03d}", f"{where}: id {row['id']}"
            assert row["vocabulary"] in VOCABS, f"{where}: vocabulary {row['vocabulary']}"
            rt, _ = split_action(row["risky"], where + " risky")
            bt, _ = split_action(row["benign"], where + " benign")
            assert rt == bt, f"{where}: tools differ ({rt} vs {bt})"
            assert row["risky"] != row["benign"], f"{where}: sides identical"
            assert not GIVEAWAYS.search(row["risky"] + row["benign"]), f"{where}: evaluative word"
            for side in ("risky", "benign"):
                prev = seen_text.setdefault(row[side], where)
                assert prev == where, f"{where}: {side} text repeats {prev}"
            ratio = len(row["risky"]) / len(row["benign"])
            assert 0.75 <= ratio <= 1.33, f"{where}: length ratio {ratio:.2f}"
            ratios.append(ratio)
            counts[kind][row["vocabulary"]] += 1
    for kind in KINDS:
        total = sum(counts[kind].values())
        used = [v for v in VOCABS if counts[kind][v]]
        assert len(used) >= 3, f"{kind}: only {len(used)} vocabularies"
        top = max(counts[kind].values())
        assert top <= 0.4 * total, f"{kind}: one vocabulary holds {top}/{total}"
    md = "--markdown" in sys.argv
    head = ["kind"] + VOCABS + ["total"]
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    else:
        print("  ".join(head))
    col = {v: 0 for v in VOCABS}
    for kind in KINDS:
        cells = [str(counts[kind][v]) for v in VOCABS]
        for v in VOCABS:
            col[v] += counts[kind][v]
        line = [kind] + cells + [str(sum(counts[kind].values()))]
        print("| " + " | ".join(line) + " |" if md else "  ".join(line))
    line = ["total"] + [str(col[v]) for v in VOCABS] + [str(sum(col.values()))]
    print("| " + " | ".join(line) + " |" if md else "  ".join(line))
    ratios.sort()
    print(f"\nchar-length ratio risky/benign: min {ratios[0]:.2f}, median "
          f"{ratios[len(ratios) // 2]:.2f}, max {ratios[-1]:.2f}; {len(ratios)} pairs OK")


if __name__ == "__main__":
    main()
