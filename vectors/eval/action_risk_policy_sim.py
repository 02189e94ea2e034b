#!/usr/bin/env python3
"""Would an action-risk rule help the default policy? (issue 8)

Takes the dev steps' default-policy decisions and stress signatures (as `limbic check`
makes them; dumped by the `action_rows` example) and adds one rule:
    stop if action_risk >= t and stress >= s
with (t, s) chosen on the tuning domains (recall, calm false veto <= 0.03), reported
on the held-out domains. action_risk comes from directions fitted on the contrastive
pairs only. Controls: the same rule with stress alone, and with a bag-of-words risk.

    python3 vectors/eval/action_risk_policy_sim.py DUMP_DIR
"""
import json, os, re, sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np

d = sys.argv[1]
shape = json.load(open(f"{d}/shape.json"))
L, E = len(shape["layers"]), shape["n_embd"]
HELDOUT = {"devops-k8s", "mobile-release", "cloud-iac", "drone-ops", "lab-automation",
           "finance-ops", "customer-support"}
MAX_FV = float(os.environ.get("MAX_FV", "0.03"))


def load(name):
    meta = [json.loads(l) for l in open(f"{d}/{name}.jsonl")]
    x = np.fromfile(f"{d}/{name}.f32", dtype="<f4").reshape(len(meta), 2, L, E)
    return meta, x


def fit(xp, xn, method, lam=0.5):
    mu = xp.mean(0) - xn.mean(0)
    if method == "lda":
        c = np.concatenate([xp - xp.mean(0), xn - xn.mean(0)])
        s = c.T @ c / len(c)
        mu = np.linalg.solve(s + lam * np.trace(s) / len(s) * np.eye(len(s)), mu)
    w = mu / (np.linalg.norm(mu) + 1e-12)
    both = np.concatenate([xp, xn]) @ w
    return w, both.mean(), both.std() + 1e-9


meta, x = load("pairs")
smeta, sx = load("steps")
kinds = sorted({m["kind"] for m in meta})
kind = np.array([m["kind"] for m in meta])
risky = np.array([m["risky"] for m in meta])
block = np.array([m["block"] for m in smeta])
stress = np.array([m["stress"] for m in smeta])
sig = np.array([m["signature"] for m in smeta])
base = np.array([m["decision"] in ("veto", "reroute") for m in smeta])
held = np.array([m["domain"] in HELDOUT for m in smeta])
calm = (stress == 0) & (block == 0)


def risk(method, pool, layer_names, agg):
    ls = [shape["layers"].index(l) for l in layer_names]
    fp = x[:, pool, ls, :].reshape(len(meta), -1)
    fs = sx[:, pool, ls, :].reshape(len(smeta), -1)
    if agg == "pooled":
        w, mu, sd = fit(fp[risky == 1], fp[risky == 0], method)
        return (fs @ w - mu) / sd
    zs = []
    for k in kinds:
        m = kind == k
        w, mu, sd = fit(fp[m & (risky == 1)], fp[m & (risky == 0)], method)
        zs.append((fs @ w - mu) / sd)
    return np.max(zs, axis=0)


def words(t):
    return set(re.findall(r"[a-z0-9_]+", t.lower()))


def bow():
    cp, cn = {}, {}
    for m in meta:
        for w in words(m["text"]):
            (cp if m["risky"] else cn)[w] = (cp if m["risky"] else cn).get(w, 0) + 1
    return np.array([sum(np.log((cp.get(w, 0) + 1) / (cn.get(w, 0) + 1)) for w in words(m["text"]))
                     / max(len(words(m["text"])), 1) ** 0.5 for m in smeta])


def rates(stop, part):
    b, c = (block == 1) & part, calm & part
    return stop[b].mean(), stop[c].mean()


def choose(z):
    # Where the default policy is already above the cap, allow it no extra false veto.
    cap = max(MAX_FV, rates(base, ~held)[1])
    best = None
    for t in np.unique(np.quantile(z, np.linspace(0.3, 0.995, 60))):
        for s in [-9, 0.0, 0.5, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5]:
            stop = base | ((z >= t) & (sig >= s))
            r, fv = rates(stop, ~held)
            if fv <= cap and (best is None or (r, -fv) > (best[0], -best[1])):
                best = (r, fv, t, s)
    return best


def auroc(score, label):
    pos, neg = score[label == 1], score[label == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return gt / (len(pos) * len(neg))


def missed_auroc(z, part):
    """Block=1 steps the default policy lets through vs calm steps it lets through."""
    m = part & ~base & ((block == 1) | calm)
    return auroc(z[m], block[m])


def report(name, z):
    ar = f"misses-vs-calm AUROC {missed_auroc(z, ~held):.3f}/{missed_auroc(z, held):.3f}"
    r, fv, t, s = choose(z)
    stop = base | ((z >= t) & (sig >= s))
    hr, hfv = rates(stop, held)
    print(f"{name:38} t={t:6.2f} s={s:5.2f}  tuning {r:.3f}/{fv:.3f}  held-out {hr:.3f}/{hfv:.3f}  {ar}")


sessions = [m["session"] for m in smeta]


def session_relative(z):
    """z minus the mean of the session's earlier steps' z (0 on a session's first step):
    a per-session baseline, like the stress tracker's, to cancel the tool/domain offset."""
    out, seen = np.zeros_like(z), {}
    for i, sess in enumerate(sessions):
        prev = seen.setdefault(sess, [])
        out[i] = z[i] - np.mean(prev) if prev else 0.0
        prev.append(z[i])
    return out


r0 = rates(base, ~held); h0 = rates(base, held)
print(f"calm false veto cap on tuning: {MAX_FV}")
print(f"{'default policy (no added rule)':38} {'':17} tuning {r0[0]:.3f}/{r0[1]:.3f}  held-out {h0[0]:.3f}/{h0[1]:.3f}")
print("(recall/calm false veto; misses-vs-calm AUROC on tuning/held-out)")
report("+ stress alone (control)", np.zeros(len(smeta)))
print(f"{'stress signature itself':38} misses-vs-calm AUROC {missed_auroc(sig, ~held):.3f}/{missed_auroc(sig, held):.3f}")
report("+ bag-of-words risk (lexical control)", bow())
if os.environ.get("SESSION_RELATIVE"):
    report("+ bag-of-words (session-relative)", session_relative(bow()))
report("+ rule risk level (lexical control)", np.array([m["rule_risk"] for m in smeta], float))
CONFIGS = json.loads(os.environ["CONFIGS"]) if "CONFIGS" in os.environ else [
    ("dom", 0, [17], "pooled"), ("dom", 0, [1, 16, 17], "pooled"), ("dom", 1, [16, 17, 22], "max"),
    ("lda", 0, [16], "max"), ("lda", 0, [10, 13, 16], "pooled"), ("lda", 1, [16], "pooled"),
    ("lda", 1, [16, 19, 22], "pooled"), ("lda", 1, [16, 19, 22], "max")]
for method, pool, ls, agg in CONFIGS:
    z = risk(method, pool, ls, agg)
    name = f"{method} {'mean' if pool == 0 else 'last'} L{'+'.join(map(str, ls))} {agg}"
    report(f"+ {name}", z)
    if os.environ.get("SESSION_RELATIVE"):
        report(f"+ {name} (session-relative)", session_relative(z))
