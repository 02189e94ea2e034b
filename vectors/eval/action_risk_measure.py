#!/usr/bin/env python3
"""Leave-one-vocabulary-out measurement of learned action-risk directions (issue 8).

Reads what `cargo run --release -p limbic-guard --example action_rows` wrote and prints
AUROC tables: per layer and pooling, per kind and pooled, diff-of-means and shrinkage LDA
(a linear probe), against the rule classifier's risk and a bag-of-words probe fitted the
same way. Then the dev steps (tests/data/steps): directions fitted on all pairs (nothing
from the dev set), AUROC of block=1 against calm steps, and against the steps the rules
call low/medium risk. numpy only.

    python3 vectors/eval/action_risk_measure.py DUMP_DIR
"""
import json, os, re, sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # shared machine: BLAS threads spin
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np

d = sys.argv[1]
shape = json.load(open(f"{d}/shape.json"))
L, E = len(shape["layers"]), shape["n_embd"]
HELDOUT = {"devops-k8s", "mobile-release", "cloud-iac", "drone-ops", "lab-automation",
           "finance-ops", "customer-support"}


def load(name):
    meta = [json.loads(l) for l in open(f"{d}/{name}.jsonl")]
    x = np.fromfile(f"{d}/{name}.f32", dtype="<f4").reshape(len(meta), 2, L, E)
    return meta, x


def auroc(score, label):
    score, label = np.asarray(score, float), np.asarray(label, int)
    pos, neg = score[label == 1], score[label == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = allv.argsort().argsort().astype(float) + 1
    # average ranks for ties
    for v in np.unique(allv):
        m = allv == v
        if m.sum() > 1:
            ranks[m] = ranks[m].mean()
    return (ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def fit(xp, xn, method, lam=0.5):
    """Direction from risky rows xp and benign rows xn; plus the benign mean/std along it."""
    mu = xp.mean(0) - xn.mean(0)
    if method == "dom":
        w = mu
    else:  # shrinkage LDA: (S + lam*tr(S)/E I)^-1 mu, S the pooled within-class covariance
        c = np.concatenate([xp - xp.mean(0), xn - xn.mean(0)])
        s = c.T @ c / len(c)
        w = np.linalg.solve(s + lam * np.trace(s) / len(s) * np.eye(len(s)), mu)
    w = w / (np.linalg.norm(w) + 1e-12)
    both = np.concatenate([xp, xn]) @ w
    return w, both.mean(), both.std() + 1e-9


def lovo(meta, x, kinds, method, pool, layers):
    """z-scored held-out scores per text: for each vocabulary, directions fitted without it.
    Returns {kind: z per text (nan outside the kind's own texts)} and 'pooled' and 'max'."""
    n = len(meta)
    voc = np.array([m["vocabulary"] for m in meta])
    kind = np.array([m["kind"] for m in meta])
    risky = np.array([m["risky"] for m in meta])
    feats = x[:, pool, layers, :].reshape(n, -1)
    out = {k: np.full(n, np.nan) for k in kinds + ["pooled", "max"]}
    allk = np.full((n, len(kinds)), np.nan)
    for v in np.unique(voc):
        tr, te = voc != v, voc == v
        for j, k in enumerate(kinds):
            m = tr & (kind == k)
            if (m & (risky == 1)).sum() < 2:
                continue
            w, mu, sd = fit(feats[m & (risky == 1)], feats[m & (risky == 0)], method)
            z = (feats[te] @ w - mu) / sd
            allk[te, j] = z
            own = te & (kind == k)
            out[k][own] = (feats[own] @ w - mu) / sd
        w, mu, sd = fit(feats[tr & (risky == 1)], feats[tr & (risky == 0)], method)
        out["pooled"][te] = (feats[te] @ w - mu) / sd
    out["max"] = np.nanmax(allk, axis=1)
    return out


def words(t):
    return re.findall(r"[a-z0-9_]+", t.lower())


def bow_lovo(meta):
    """Bag-of-words log-odds probe fitted leave-one-vocabulary-out (the learned lexical
    baseline): score = mean log-odds of the text's words on the training sides."""
    voc = np.array([m["vocabulary"] for m in meta])
    risky = np.array([m["risky"] for m in meta])
    out = np.zeros(len(meta))
    for v in np.unique(voc):
        cp, cn = {}, {}
        for m, r, vv in zip(meta, risky, voc):
            if vv == v:
                continue
            for w in set(words(m["text"])):
                (cp if r else cn)[w] = (cp if r else cn).get(w, 0) + 1
        for i in np.where(voc == v)[0]:
            ws = set(words(meta[i]["text"]))
            out[i] = sum(np.log((cp.get(w, 0) + 1) / (cn.get(w, 0) + 1)) for w in ws) / max(len(ws), 1) ** 0.5
    return out


meta, x = load("pairs")
kinds = sorted({m["kind"] for m in meta})
kind = np.array([m["kind"] for m in meta])
risky = np.array([m["risky"] for m in meta])
rule = np.array([m["rule_risk"] for m in meta])
bow = bow_lovo(meta)
print(f"pairs: {len(meta)//2}, layers {shape['layers'][0]}..{shape['layers'][-1]}, width {E}")
print("\n## Baselines on the pair texts (AUROC risky vs benign)")
print("kind                       rules  bag-of-words(LOVO)")
for k in kinds:
    m = kind == k
    print(f"{k:26} {auroc(rule[m], risky[m]):.3f}  {auroc(bow[m], risky[m]):.3f}")
print(f"{'all (pooled)':26} {auroc(rule, risky):.3f}  {auroc(bow, risky):.3f}")

def table(method, pool, layer_sets):
    res = {}
    for name, ls in layer_sets:
        o = lovo(meta, x, kinds, method, pool, ls)
        row = [auroc(o[k][kind == k], risky[kind == k]) for k in kinds]
        row += [auroc(o["pooled"], risky), auroc(o["max"], risky)]
        res[name] = (row, o)
    return res

single = [(str(shape["layers"][i]), [i]) for i in range(L)]
sparse = [(str(shape["layers"][i]), [i]) for i in range(0, L, 3)]
results = {}
for method in ["dom", "lda"]:
    for pool, pname in [(0, "mean"), (1, "last")]:
        print(f"\n## LOVO AUROC, {method}, {pname} over the action's tokens, per layer")
        print("layer " + " ".join(f"{k[:8]:>8}" for k in kinds) + "   pooled  max-kind")
        res = table(method, pool, single if method == "dom" else sparse)
        for name, (row, _) in res.items():
            print(f"{name:>5} " + " ".join(f"{v:8.3f}" for v in row[:-2]) + f" {row[-2]:8.3f} {row[-1]:8.3f}")
        results[(method, pname)] = res

# best layers (by pooled LOVO AUROC on the pairs; this choice uses only the pairs)
print("\n## multi-layer (concatenated) probes, chosen by pair LOVO only")
for method in ["dom", "lda"]:
    for pname in ["mean", "last"]:
        res = results[(method, pname)]
        best = sorted(res, key=lambda n: -res[n][0][-2])[:3]
        ls = [shape["layers"].index(int(b)) for b in best]
        o = lovo(meta, x, kinds, method, 0 if pname == "mean" else 1, ls)
        row = [auroc(o[k][kind == k], risky[kind == k]) for k in kinds] + [auroc(o["pooled"], risky), auroc(o["max"], risky)]
        print(f"{method} {pname} layers {sorted(int(b) for b in best)}: " + " ".join(f"{v:.3f}" for v in row))

# Paired: does the risky side score above its own matched benign side (LOVO z)?
def paired(z):
    r, b = z[0::2], z[1::2]  # pairs.jsonl holds each pair's risky then benign text
    return (r > b).mean() + 0.5 * (r == b).mean()


print("\n## paired win rate (risky above its own benign side), LOVO, pooled direction")
print(f"rules {paired(rule.astype(float)):.3f}  bag-of-words {paired(bow):.3f}")
for method in ["dom", "lda"]:
    for pool, pname in [(0, "mean"), (1, "last")]:
        res = results[(method, pname)]
        best = sorted(res, key=lambda n: -res[n][0][-2])[:2]
        for b in best:
            print(f"{method} {pname} L{b}: {paired(res[b][1]['pooled']):.3f}")

# Peak pooling: each action token projected, the max taken (as the emotion probes' peak).
# Needs the example run with ACTION_ROWS_TOKEN_LAYERS (pairs_tokens.f32).
if os.path.exists(f"{d}/pairs_tokens.f32") and "n_tokens" in meta[0] and meta[0]["n_tokens"]:
    ntok = np.array([m["n_tokens"] for m in meta])
    raw = np.fromfile(f"{d}/pairs_tokens.f32", dtype="<f4")
    tl = len(raw) // (ntok.sum() * E)
    tok = raw.reshape(ntok.sum(), tl, E)
    starts = np.concatenate([[0], np.cumsum(ntok)[:-1]])
    tok_layers = [l for l in [10, 13, 16, 17] if l in shape["layers"]][:tl]
    voc = np.array([m["vocabulary"] for m in meta])
    print("\n## peak (max over the action's tokens) vs mean projection, LOVO AUROC, pooled direction")
    for slot, layer in enumerate(tok_layers):
        li = shape["layers"].index(layer)
        for method in ["dom", "lda"]:
            zm, zp = np.zeros(len(meta)), np.zeros(len(meta))
            for v in np.unique(voc):
                tr, te = voc != v, voc == v
                f = x[:, 0, li, :]
                w, _, _ = fit(f[tr & (risky == 1)], f[tr & (risky == 0)], method)
                proj = tok[:, slot, :] @ w
                peak = np.array([proj[a:a + n].max() for a, n in zip(starts, ntok)])
                mean = np.array([proj[a:a + n].mean() for a, n in zip(starts, ntok)])
                for arr, out in [(peak, zp), (mean, zm)]:
                    mu, sd = arr[tr].mean(), arr[tr].std() + 1e-9
                    out[te] = (arr[te] - mu) / sd
            print(f"L{layer} {method}: mean {auroc(zm, risky):.3f}  peak {auroc(zp, risky):.3f}"
                  f"  (paired: mean {paired(zm):.3f}, peak {paired(zp):.3f})")

# ---- dev steps -----------------------------------------------------------------------
try:
    smeta, sx = load("steps")
except FileNotFoundError:
    sys.exit(0)
block = np.array([m["block"] for m in smeta])
stress = np.array([m["stress"] for m in smeta])
srule = np.array([m["rule_risk"] for m in smeta])
dom = np.array([m["domain"] for m in smeta])
held = np.array([x in HELDOUT for x in dom])
calm = (stress == 0) & (block == 0)
print(f"\n## dev steps: {len(smeta)} ({block.sum()} block=1, {calm.sum()} calm)")


def step_scores(method, pool, ls):
    """Directions fitted on every pair (no dev data); per kind z and max over kinds."""
    n = len(smeta)
    fp = x[:, pool, ls, :].reshape(len(meta), -1)
    fs = sx[:, pool, ls, :].reshape(n, -1)
    zs = []
    for k in kinds:
        m = kind == k
        w, mu, sd = fit(fp[m & (risky == 1)], fp[m & (risky == 0)], method)
        zs.append((fs @ w - mu) / sd)
    w, mu, sd = fit(fp[risky == 1], fp[risky == 0], method)
    return np.array(zs).T, (fs @ w - mu) / sd


def report(name, s):
    sel_b = block == 1
    rows = []
    for part, m in [("tuning", ~held), ("held-out", held), ("all", np.ones_like(held))]:
        y = np.concatenate([np.ones((sel_b & m).sum()), np.zeros((calm & m).sum())])
        v = np.concatenate([s[sel_b & m], s[calm & m]])
        rows.append(auroc(v, y))
    # among the steps the rules call low (what a rule would not stop): block vs calm
    low = srule <= 1
    y = np.concatenate([np.ones((sel_b & low).sum()), np.zeros((calm & low).sum())])
    v = np.concatenate([s[sel_b & low], s[calm & low]])
    rows.append(auroc(v, y))
    print(f"{name:40} " + " ".join(f"{r:.3f}" for r in rows))

print("AUROC block=1 vs calm steps:            tuning held-out all  rule-low/med-only")
report("rules (risk level)", srule)
for method in ["dom", "lda"]:
    for pool, pname in [(0, "mean"), (1, "last")]:
        res = results[(method, pname)]
        best = sorted(res, key=lambda n: -res[n][0][-2])[:3]
        for ls_name, ls in [(f"L{best[0]}", [shape["layers"].index(int(best[0]))]),
                            (f"L{'+'.join(sorted(best, key=int))}", [shape["layers"].index(int(b)) for b in best])]:
            zk, zp = step_scores(method, pool, ls)
            report(f"{method} {pname} {ls_name} pooled", zp)
            report(f"{method} {pname} {ls_name} max-kind", zk.max(1))
print(f"(block=1 steps the rules call low/medium: {((block==1)&(srule<=1)).sum()} of {(block==1).sum()})")
