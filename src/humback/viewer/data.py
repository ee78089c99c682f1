"""A run's rows for the viewer, queried with DuckDB: read once into a database file in humback's cache
folder (not the run's: the run folder is only read), keyed by the run files' paths, sizes and modification
times, so reopening an unchanged run is immediate and a changed one is read again.

Tables:
- `cand`: one row per candidate (id, instruction, response, segment_id) with, per iteration t, the
  judge's numbers (`s<t>_score`, `s<t>_judge`, `s<t>_ifd`, `s<t>_nll`, `s<t>_end`), why it was skipped
  (`s<t>_skipped`) and whether M_{t-1}'s curation selected it (`sel<t>`);
- `seg`: the segments (text, url, header path) the candidates were written for.
Every query is parameterised; sort columns come from a fixed list.
"""

from __future__ import annotations

import json
from pathlib import Path

from humback.errors import HumbackError
from humback.records import file_lock, read_jsonl
from humback.rundir import RunDir

SIGNALS = {"score": "score", "judge": "judge_score", "ifd": "ifd", "nll": "nll", "end": "end_logprob"}
PAGE_MAX = 200


class ViewerError(HumbackError):
    """The run folder cannot be shown (no candidates yet) or a request asks for something it lacks."""


def _json_source(path: Path) -> str:
    # DuckDB reads newline-delimited JSON itself; the path is passed as a literal, so quote it.
    return "read_json_auto('" + str(path).replace("'", "''") + "', format='newline_delimited', sample_size=-1)"


SCHEMA = 1  # bump when the tables change: older cached databases are then rebuilt


class RunData:
    def __init__(self, run_dir: str | Path):
        import duckdb

        from humback.models import cache_dir

        self.run = RunDir(run_dir)
        if not self.run.candidates.is_file():
            raise ViewerError(f"{run_dir}: no candidates.jsonl yet (run `humback run` at least to augmentation)")
        self.iterations = self.run.iterations()
        path = cache_dir() / "view" / f"{self._key()}.duckdb"
        if not path.is_file():
            with file_lock(path.with_name(path.name + ".lock"), what=f"the viewer's copy of {run_dir}"):
                if not path.is_file():
                    tmp = path.with_name(path.name + ".tmp")
                    tmp.unlink(missing_ok=True)
                    self.db = duckdb.connect(str(tmp))
                    self._build()
                    self.db.close()
                    tmp.rename(path)
        self.db = duckdb.connect(str(path), read_only=True)

    def _key(self) -> str:
        import hashlib

        files = [self.run.candidates, self.run.segments] + [f(t) for t in self.iterations
                                                            for f in (self.run.scored, self.run.selected)]
        stamp = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.is_file()]
        return hashlib.sha256(json.dumps([SCHEMA, stamp]).encode()).hexdigest()[:24]

    def _build(self) -> None:
        # Each file is read once (DuckDB infers the schema over the whole file, then loads it); the
        # candidates meet every iteration's scores and selection in one join.
        self.db.execute(f"CREATE TEMP TABLE c0 AS SELECT id::VARCHAR AS id, instruction::VARCHAR AS instruction,"
                        f" response::VARCHAR AS response, segment_id::VARCHAR AS segment_id"
                        f" FROM {_json_source(self.run.candidates)}")
        cols, joins = ["c0.*"], []
        for t in self.iterations:
            self._add_iteration(t)
            cols += [f"sc{t}.s{t}_{n}" for n in SIGNALS] + [f"sc{t}.s{t}_skipped", f"sc{t}.s{t}_reasoning",
                                                             f"(se{t}.id IS NOT NULL) AS sel{t}"]
            joins += [f"LEFT JOIN sc{t} ON sc{t}.id = c0.id", f"LEFT JOIN se{t} ON se{t}.id = c0.id"]
        self.db.execute(f"CREATE TABLE cand AS SELECT {', '.join(cols)} FROM c0 {' '.join(joins)}")
        self._add_segments()

    def _load(self, name: str, path: Path) -> set[str]:
        """`path` read once into the temporary table `name`; its column names."""
        self.db.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {_json_source(path)}")
        return {r[0] for r in self.db.execute(f"DESCRIBE {name}").fetchall()}

    def _add_segments(self) -> None:
        if self.run.segments.is_file():
            cols = self._load("seg_raw", self.run.segments)
            url = "url::VARCHAR" if "url" in cols else "NULL::VARCHAR"
            path = "to_json(header_path)::VARCHAR" if "header_path" in cols else "NULL::VARCHAR"
            self.db.execute(f"CREATE TABLE seg AS SELECT id::VARCHAR AS id, text::VARCHAR AS text, {url} AS url,"
                            f" {path} AS header_path FROM seg_raw")
        else:
            self.db.execute("CREATE TABLE seg (id VARCHAR, text VARCHAR, url VARCHAR, header_path VARCHAR)")

    def _add_iteration(self, t: int) -> None:
        cols = self._load(f"raw{t}", self.run.scored(t))
        picks = ", ".join(f"{('TRY_CAST(' + src + ' AS DOUBLE)') if src in cols else 'NULL::DOUBLE'} AS s{t}_{name}"
                          for name, src in SIGNALS.items())
        skipped = "skipped::VARCHAR" if "skipped" in cols else "NULL::VARCHAR"
        reasoning = "reasoning::VARCHAR" if "reasoning" in cols else "NULL::VARCHAR"
        self.db.execute(f"CREATE TEMP TABLE sc{t} AS SELECT id::VARCHAR AS id, {picks}, {skipped} AS s{t}_skipped,"
                        f" {reasoning} AS s{t}_reasoning FROM raw{t}")
        selected = self.run.selected(t)
        if selected.is_file() and selected.stat().st_size:
            self.db.execute(f"CREATE TEMP TABLE se{t} AS SELECT DISTINCT id::VARCHAR AS id FROM {_json_source(selected)}")
        else:
            self.db.execute(f"CREATE TEMP TABLE se{t} (id VARCHAR)")

    # -- queries -----------------------------------------------------------------------------------

    def _sql(self, query: str, params: list | None = None):
        # A cursor per query: requests are answered from several threads, and a DuckDB connection is not
        # to be shared between threads; cursors of one connection are.
        return self.db.cursor().execute(query, params or [])

    def sortable(self) -> list[str]:
        return ["id", "instruction_chars", "response_chars"] + [f"s{t}_{n}" for t in self.iterations for n in SIGNALS]

    def page(self, iteration: int | None = None, sort: str = "id", descending: bool = False,
             min_score: float | None = None, max_score: float | None = None, selected: bool | None = None,
             skipped: str | None = None, search: str | None = None, offset: int = 0, limit: int = 50) -> dict:
        """One page of candidates and the number of rows matching the filters. Score bounds, `selected`
        and `skipped` apply to `iteration` (the last one by default)."""
        t = iteration if iteration is not None else (self.iterations[-1] if self.iterations else None)
        if t is not None and t not in self.iterations:
            raise ViewerError(f"no iteration {t} in this run (iterations: {self.iterations})")
        if sort not in self.sortable():
            raise ViewerError(f"cannot sort by '{sort}' (accepted: {', '.join(self.sortable())})")
        where, params = ["TRUE"], []
        if t is not None:
            if min_score is not None:
                where.append(f"s{t}_score >= ?")
                params.append(min_score)
            if max_score is not None:
                where.append(f"s{t}_score <= ?")
                params.append(max_score)
            if selected is not None:
                where.append(f"sel{t} = ?")
                params.append(selected)
            if skipped:
                where.append(f"s{t}_skipped = ?")
                params.append(skipped)
        if search:
            where.append("(instruction ILIKE ? OR response ILIKE ?)")
            like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [like, like]
        cond = " AND ".join(where).replace("ILIKE ?", "ILIKE ? ESCAPE '\\'")
        order = {"instruction_chars": "length(instruction)", "response_chars": "length(response)"}.get(sort, sort)
        total = self._sql(f"SELECT count(*) FROM cand WHERE {cond}", params).fetchone()[0]
        limit = max(1, min(PAGE_MAX, limit))
        cols = ["id", "left(instruction, 300) AS instruction", "left(response, 300) AS response",
                "length(response) AS response_chars"]
        cols += [f"s{i}_{n}" for i in self.iterations for n in ("score", "judge", "ifd")]
        cols += [f"sel{i}" for i in self.iterations] + [f"s{i}_skipped" for i in self.iterations]
        rows = self._sql(
            f"SELECT {', '.join(cols)} FROM cand WHERE {cond} ORDER BY {order} {'DESC' if descending else 'ASC'}"
            f" NULLS LAST, id LIMIT ? OFFSET ?", [*params, limit, max(0, offset)])
        names = [d[0] for d in rows.description]
        return {"total": total, "offset": offset, "limit": limit, "iteration": t,
                "rows": [dict(zip(names, r)) for r in rows.fetchall()]}

    def row(self, row_id: str) -> dict:
        """One candidate in full: texts, every iteration's numbers and reasoning, its segment."""
        cur = self._sql("SELECT * FROM cand WHERE id = ?", [row_id])
        found = cur.fetchone()
        if found is None:
            raise ViewerError(f"no candidate with id {row_id!r}")
        row = dict(zip([d[0] for d in cur.description], found))
        seg = self._sql("SELECT text, url, header_path FROM seg WHERE id = ?", [row["segment_id"] or row_id]).fetchone()
        row["segment"] = None if seg is None else {"text": seg[0], "url": seg[1],
                                                   "header_path": json.loads(seg[2]) if seg[2] else None}
        return row

    def diff(self, t: int) -> dict:
        """Rows selected in iteration t and not in t-1 ('gained'), and the reverse ('lost')."""
        if t not in self.iterations or t - 1 not in self.iterations:
            raise ViewerError(f"iteration diff needs iterations {t - 1} and {t} (this run has {self.iterations})")
        out = {}
        for name, cond in (("gained", f"sel{t} AND NOT sel{t - 1}"), ("lost", f"sel{t - 1} AND NOT sel{t}")):
            cur = self._sql(f"SELECT id, left(instruction, 300) AS instruction, s{t - 1}_score AS before,"
                                  f" s{t}_score AS after FROM cand WHERE {cond} ORDER BY id")
            out[name] = [dict(zip([d[0] for d in cur.description], r)) for r in cur.fetchall()]
        return out

    def funnel(self) -> dict:
        """Documents -> segments -> candidates -> selected per iteration, with the drop reasons."""
        manifest = self.run.read_manifest() if self.run.manifest_path.is_file() else {"stages": {}}
        stats = {k: (v.get("stats") or {}) for k, v in manifest["stages"].items()}
        seg = stats.get("segment", {})
        steps = [{"step": "documents", "rows": seg.get("funnel", {}).get("documents")},
                 {"step": "segments kept", "rows": seg.get("rows"),
                  "dropped": {k[8:]: v for k, v in seg.get("funnel", {}).items() if k.startswith("dropped_")}},
                 {"step": "candidates", "rows": self._sql("SELECT count(*) FROM cand").fetchone()[0]}]
        for t in self.iterations:
            cur = stats.get(f"curate:{t}", {})
            skipped = self._sql(f"SELECT s{t}_skipped, count(*) FROM cand WHERE s{t}_skipped IS NOT NULL"
                                      f" GROUP BY 1").fetchall()
            steps.append({"step": f"selected, iteration {t}",
                          "rows": self._sql(f"SELECT count(*) FROM cand WHERE sel{t}").fetchone()[0],
                          "threshold": cur.get("threshold"), "dropped": dict(skipped)})
        return {"name": manifest.get("name"), "iterations": self.iterations, "steps": steps}

    def histogram(self, t: int, signal: str = "score", bins: int = 20) -> dict:
        """Counts of a signal over all candidates and over the selected ones, in equal-width bins."""
        if t not in self.iterations or signal not in SIGNALS:
            raise ViewerError(f"no {signal} for iteration {t}")
        col = f"s{t}_{signal}"
        lo, hi = self._sql(f"SELECT min({col}), max({col}) FROM cand").fetchone()
        if lo is None:
            return {"edges": [], "all": [], "selected": []}
        return self._bins(col, t, lo, hi, bins)

    def _bins(self, expr: str, t: int, lo: float, hi: float, bins: int) -> dict:
        """Counts of `expr` over all candidates and over those iteration t selected, in `bins` equal-width
        bins from lo to hi (the top one closed)."""
        width = (hi - lo) / bins or 1.0
        counts = self._sql(
            f"SELECT least(CAST(floor(({expr} - ?) / ?) AS INTEGER), ?) AS b, count(*), count(*) FILTER (WHERE sel{t})"
            f" FROM cand WHERE {expr} IS NOT NULL GROUP BY 1 ORDER BY 1", [lo, width, bins - 1]).fetchall()
        every, chosen = [0] * bins, [0] * bins
        for b, n, c in counts:
            every[b], chosen[b] = n, c
        return {"edges": [lo + i * width for i in range(bins + 1)], "all": every, "selected": chosen}

    def evaluation(self) -> dict:
        """humback eval's metrics and each model's answers side by side, when the run was evaluated."""
        ev = self.run.eval_dir
        if not (ev / "metrics.json").is_file():
            return {"metrics": None, "answers": []}
        metrics = json.loads((ev / "metrics.json").read_text(encoding="utf-8"))
        by_model = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((ev / "answers").glob("*.json"))}
        names = list(by_model)
        answers = [{"instruction": rows[0]["instruction"], **{n: by_model[n][i]["output"] for n in names}}
                   for i, rows in enumerate(zip(*by_model.values()))] if by_model else []
        return {"metrics": metrics, "models": names, "answers": answers}

    def lengths(self, t: int, bins: int = 20) -> dict:
        """Response lengths (characters) of all candidates vs those iteration t selected: a selection much
        longer than its pool says the score partly rewards length."""
        if t not in self.iterations:
            raise ViewerError(f"no iteration {t} in this run (iterations: {self.iterations})")
        hi = self._sql("SELECT max(length(response)) FROM cand").fetchone()[0] or 1
        return self._bins("length(response)", t, 0, hi, bins)

    def curves(self) -> dict:
        """Training loss per model (models/*/humback_train.json) and, after `humback eval`, each iteration's
        judge ROC curve per signal (eval/calibration/iter<t>/scored.jsonl: labelled good and bad rows)."""
        loss = {}
        for p in sorted(self.run.models.glob("*/humback_train.json")):
            curve = json.loads(p.read_text(encoding="utf-8")).get("loss_curve") or []
            loss[p.parent.name] = [[e["step"], e["loss"]] for e in curve if e.get("loss") is not None]
        roc: dict[str, dict] = {}
        for p in sorted(self.run.eval_dir.glob("calibration/iter*/scored.jsonl")):
            rows = list(read_jsonl(p))
            roc[p.parent.name] = {name: _roc([r["label"] for r in rows], [sign * r[name] if r.get(name) is not None
                                                                          else None for r in rows])
                                  for name, sign in (("score", 1), ("ifd", -1), ("end_logprob", 1))
                                  if any(r.get(name) is not None for r in rows)}
        return {"loss": loss, "roc": roc}


def _roc(labels: list[int], scores: list[float | None]) -> list[list[float]]:
    """ROC points (false positive rate, true positive rate); unscored rows ranked last, as selection does."""
    from sklearn.metrics import roc_curve

    if len(set(labels)) < 2:
        return []
    low = min((s for s in scores if s is not None), default=0.0) - 1.0
    fpr, tpr, _ = roc_curve(labels, [low if s is None else s for s in scores])
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(fpr, tpr)]

