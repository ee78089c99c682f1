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
import math
import re
from dataclasses import asdict
from pathlib import Path

from humback.errors import HumbackError
from humback.files import folder_lock
from humback.records import RecordError, is_number, read_json, read_jsonl
from humback.rundir import RunDir
from humback.status import funnel

# The viewer's short name (its column s<t>_<name>) for each signal of a scored row.
COLUMNS = {"score": "score", "judge": "judge_score", "ifd": "ifd", "nll": "nll", "end": "end_logprob"}
PAGE_MAX = 200


class ViewerError(HumbackError):
    """The run folder cannot be shown (no candidates yet) or a request asks for something it lacks."""


class RunFileError(ViewerError):
    """A run file the viewer cannot read (malformed JSON, a wrong shape); the message names it."""


def _json_source(path: Path) -> str:
    # DuckDB reads newline-delimited JSON itself. It takes the path as a glob pattern, so the pattern
    # characters are bracketed to stand for themselves (a run folder named `run?` must not also match
    # `runA`), and quoted as an SQL string literal.
    literal = re.sub(r"([*?\[])", r"[\1]", str(path)).replace("'", "''")
    return "read_json_auto('" + literal + "', format='newline_delimited', sample_size=-1)"


SCHEMA = 2  # bump when the tables change: older cached databases are then rebuilt


class RunData:
    def __init__(self, run_dir: str | Path):
        import duckdb

        from humback.models import cache_dir

        self.run = RunDir(run_dir)
        if not self.run.candidates.is_file():
            raise ViewerError(
                f"{run_dir}: no candidates.jsonl yet (run `humback run` at least to augmentation)"
            )
        self.iterations = self.run.iterations()
        path = cache_dir() / "view" / f"{self._key()}.duckdb"
        if not path.is_file():
            with folder_lock(path.with_name(path.name + ".lock"), what=f"the viewer's copy of {run_dir}"):
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

        files = [self.run.candidates, self.run.segments] + [
            f(t)
            for t in self.iterations
            for f in (self.run.scored, self.run.selected, self.run.passed_over, self.run.rewrites)
        ]
        stamp = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.is_file()]
        return hashlib.sha256(json.dumps([SCHEMA, stamp]).encode()).hexdigest()[:24]

    def _build(self) -> None:
        import duckdb

        try:
            self._tables()
        except duckdb.Error as e:
            raise RunFileError(
                f"{self._reading}: cannot be read as JSON rows of the expected shape"
                f" ({str(e).splitlines()[0][:200]})"
            ) from None

    def _tables(self) -> None:
        # Each file is read once (DuckDB infers the schema over the whole file, then loads it); the
        # candidates meet every iteration's scores and selection in one join.
        if self.run.candidates.stat().st_size == 0:
            self.db.execute(
                "CREATE TEMP TABLE c0 (id VARCHAR, instruction VARCHAR, response VARCHAR, segment_id VARCHAR)"
            )
        else:
            cols = self._load("c0_raw", self.run.candidates)
            missing = {"id", "instruction", "response"} - cols
            if missing:
                raise RunFileError(f"{self.run.candidates}: rows lack key(s) {', '.join(sorted(missing))}")
            seg = "segment_id::VARCHAR" if "segment_id" in cols else "NULL::VARCHAR"
            self.db.execute(
                f"CREATE TEMP TABLE c0 AS SELECT id::VARCHAR AS id, instruction::VARCHAR AS"
                f" instruction, response::VARCHAR AS response, {seg} AS segment_id FROM c0_raw"
            )
        cols, joins = ["c0.*"], []
        for t in self.iterations:
            self._add_iteration(t)
            cols += [f"sc{t}.s{t}_{n}" for n in COLUMNS] + [
                # skipped before judging, or passed over by selection (near-duplicate, diversity)
                f"COALESCE(sc{t}.s{t}_skipped, po{t}.reason) AS s{t}_skipped",
                f"po{t}.like_id AS s{t}_like",
                f"sc{t}.s{t}_reasoning",
                f"(se{t}.id IS NOT NULL) AS sel{t}",
                f"rw{t}.status AS r{t}_status",
                f"rw{t}.rewrite AS r{t}_rewrite",
            ]
            joins += [f"LEFT JOIN {x}{t} ON {x}{t}.id = c0.id" for x in ("sc", "se", "po", "rw")]
        self.db.execute(f"CREATE TABLE cand AS SELECT {', '.join(cols)} FROM c0 {' '.join(joins)}")
        self._add_segments()

    def _load(self, name: str, path: Path) -> set[str]:
        """`path` read once into the temporary table `name`; its column names."""
        self._reading = path  # named by the error if DuckDB cannot read it
        self.db.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {_json_source(path)}")
        cols = {r[0] for r in self.db.execute(f"DESCRIBE {name}").fetchall()}
        if "id" not in cols:
            raise RunFileError(f"{path}: rows have no 'id' key")
        return cols

    def _add_segments(self) -> None:
        if self.run.segments.is_file() and self.run.segments.stat().st_size:
            cols = self._load("seg_raw", self.run.segments)
            url = "url::VARCHAR" if "url" in cols else "NULL::VARCHAR"
            path = "to_json(header_path)::VARCHAR" if "header_path" in cols else "NULL::VARCHAR"
            self.db.execute(
                f"CREATE TABLE seg AS SELECT id::VARCHAR AS id, text::VARCHAR AS text, {url} AS url,"
                f" {path} AS header_path FROM seg_raw"
            )
        else:
            self.db.execute("CREATE TABLE seg (id VARCHAR, text VARCHAR, url VARCHAR, header_path VARCHAR)")

    def _add_iteration(self, t: int) -> None:
        if not self.run.scored(t).stat().st_size:
            self.db.execute(f"CREATE TEMP TABLE raw{t} (id VARCHAR)")
            cols = {"id"}
        else:
            cols = self._load(f"raw{t}", self.run.scored(t))
        picks = ", ".join(
            f"{('TRY_CAST(' + src + ' AS DOUBLE)') if src in cols else 'NULL::DOUBLE'} AS s{t}_{name}"
            for name, src in COLUMNS.items()
        )
        skipped = "skipped::VARCHAR" if "skipped" in cols else "NULL::VARCHAR"
        reasoning = "reasoning::VARCHAR" if "reasoning" in cols else "NULL::VARCHAR"
        self.db.execute(
            f"CREATE TEMP TABLE sc{t} AS SELECT id::VARCHAR AS id, {picks}, {skipped} AS s{t}_skipped,"
            f" {reasoning} AS s{t}_reasoning FROM raw{t}"
        )
        selected = self.run.selected(t)
        if selected.is_file() and selected.stat().st_size:
            self._load(f"se_raw{t}", selected)
            self.db.execute(f"CREATE TEMP TABLE se{t} AS SELECT DISTINCT id::VARCHAR AS id FROM se_raw{t}")
        else:
            self.db.execute(f"CREATE TEMP TABLE se{t} (id VARCHAR)")
        passed = self.run.passed_over(t)
        if passed.is_file() and passed.stat().st_size:
            got = self._load(f"po_raw{t}", passed)
            like = '"like"::VARCHAR' if "like" in got else "NULL::VARCHAR"
            self.db.execute(
                f"CREATE TEMP TABLE po{t} AS SELECT id::VARCHAR AS id, reason::VARCHAR AS reason,"
                f" {like} AS like_id FROM po_raw{t}"
            )
        else:
            self.db.execute(f"CREATE TEMP TABLE po{t} (id VARCHAR, reason VARCHAR, like_id VARCHAR)")
        rewrites = self.run.rewrites(t)
        if rewrites.is_file() and rewrites.stat().st_size:
            self._load(f"rw_raw{t}", rewrites)
            # The text to show beside the original: the rewrite used, or the one a check turned down.
            self.db.execute(
                f"CREATE TEMP TABLE rw{t} AS SELECT id::VARCHAR AS id, rewrite.status::VARCHAR AS status,"
                f" CASE WHEN rewrite.status = 'rewritten' THEN response::VARCHAR"
                f" ELSE json_extract_string(to_json(rewrite), '$.text') END AS rewrite FROM rw_raw{t}"
            )
        else:
            self.db.execute(f"CREATE TEMP TABLE rw{t} (id VARCHAR, status VARCHAR, rewrite VARCHAR)")

    # -- queries -----------------------------------------------------------------------------------

    def _sql(self, query: str, params: list | None = None):
        # A cursor per query: requests are answered from several threads, and a DuckDB connection is not
        # to be shared between threads; cursors of one connection are.
        return self.db.cursor().execute(query, params or [])

    def sortable(self) -> list[str]:
        return ["id", "instruction_chars", "response_chars"] + [
            f"s{t}_{n}" for t in self.iterations for n in COLUMNS
        ]

    def page(
        self,
        iteration: int | None = None,
        sort: str = "id",
        descending: bool = False,
        min_score: float | None = None,
        max_score: float | None = None,
        selected: bool | None = None,
        skipped: str | None = None,
        search: str | None = None,
        offset: int = 0,
        limit: int = 50,
        rewrite: str | None = None,
    ) -> dict:
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
            if (
                rewrite
            ):  # 'rewritten', 'kept' (the original: any other outcome), 'failed' (a check), 'unparsed'
                where.append(
                    {
                        "rewritten": f"r{t}_status = 'rewritten'",
                        "kept": f"r{t}_status <> 'rewritten'",
                        "failed": f"r{t}_status LIKE 'failed_%'",
                    }.get(rewrite, f"r{t}_status = ?")
                )
                if rewrite not in ("rewritten", "kept", "failed"):
                    params.append(rewrite)
        if search:
            where.append("(instruction ILIKE ? OR response ILIKE ?)")
            like = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [like, like]
        cond = " AND ".join(where).replace("ILIKE ?", "ILIKE ? ESCAPE '\\'")
        order = {"instruction_chars": "length(instruction)", "response_chars": "length(response)"}.get(
            sort, sort
        )
        total = self._sql(f"SELECT count(*) FROM cand WHERE {cond}", params).fetchone()[0]
        limit = max(1, min(PAGE_MAX, limit))
        cols = [
            "id",
            "left(instruction, 300) AS instruction",
            "left(response, 300) AS response",
            "length(response) AS response_chars",
        ]
        cols += [f"s{i}_{n}" for i in self.iterations for n in ("score", "judge", "ifd")]
        cols += [f"sel{i}" for i in self.iterations] + [f"s{i}_skipped" for i in self.iterations]
        cols += [f"r{i}_status" for i in self.iterations]
        rows = self._sql(
            f"SELECT {', '.join(cols)} FROM cand WHERE {cond}"
            f" ORDER BY {order} {'DESC' if descending else 'ASC'}"
            f" NULLS LAST, id LIMIT ? OFFSET ?",
            [*params, limit, max(0, offset)],
        )
        names = [d[0] for d in rows.description]
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "iteration": t,
            "rows": [dict(zip(names, r)) for r in rows.fetchall()],
        }

    def row(self, row_id: str) -> dict:
        """One candidate in full: texts, every iteration's numbers and reasoning, its segment."""
        cur = self._sql("SELECT * FROM cand WHERE id = ?", [row_id])
        found = cur.fetchone()
        if found is None:
            raise ViewerError(f"no candidate with id {row_id!r}")
        row = dict(zip([d[0] for d in cur.description], found))
        seg = self._sql(
            "SELECT text, url, header_path FROM seg WHERE id = ?", [row["segment_id"] or row_id]
        ).fetchone()
        row["segment"] = (
            None
            if seg is None
            else {"text": seg[0], "url": seg[1], "header_path": json.loads(seg[2]) if seg[2] else None}
        )
        return row

    def diff(self, t: int) -> dict:
        """Rows selected in iteration t and not in t-1 ('gained'), and the reverse ('lost')."""
        if t not in self.iterations or t - 1 not in self.iterations:
            raise ViewerError(
                f"iteration diff needs iterations {t - 1} and {t} (this run has {self.iterations})"
            )
        out = {}
        for name, cond in (("gained", f"sel{t} AND NOT sel{t - 1}"), ("lost", f"sel{t - 1} AND NOT sel{t}")):
            cur = self._sql(
                f"SELECT id, left(instruction, 300) AS instruction, s{t - 1}_score AS before,"
                f" s{t}_score AS after FROM cand WHERE {cond} ORDER BY id"
            )
            out[name] = [dict(zip([d[0] for d in cur.description], r)) for r in cur.fetchall()]
        return out

    def funnel(self) -> dict:
        """The run's funnel (status.funnel: documents -> segments -> candidates -> selected per iteration,
        with the drop reasons)."""
        manifest = self.run.read_manifest() if self.run.manifest_path.is_file() else {"stages": {}}
        return {
            "name": manifest.get("name"),
            "iterations": self.iterations,
            "steps": [asdict(step) | {"step": step.name} for step in funnel(manifest)],
        }

    def histogram(self, t: int, signal: str = "score", bins: int = 20) -> dict:
        """Counts of a signal over all candidates and over the selected ones, in equal-width bins."""
        if t not in self.iterations or signal not in COLUMNS:
            raise ViewerError(f"no {signal} for iteration {t}")
        col = f"s{t}_{signal}"
        # NaN and infinities (a hand-edited or foreign scored file) have no bin: they are left out.
        lo, hi = self._sql(f"SELECT min({col}), max({col}) FROM cand WHERE isfinite({col})").fetchone()
        if lo is None:
            return {"edges": [], "all": [], "selected": []}
        return self._bins(col, t, lo, hi, bins)

    def _bins(self, expr: str, t: int, lo: float, hi: float, bins: int) -> dict:
        """Counts of `expr` over all candidates and over those iteration t selected, in `bins` equal-width
        bins from lo to hi (the top one closed)."""
        # Each term divided first: hi - lo overflows for values near the float limits (+-1e308).
        width = (hi / bins - lo / bins) or 1.0
        counts = self._sql(
            f"SELECT greatest(0, least(CAST(floor({expr} / ? - ? / ?) AS INTEGER), ?)) AS b, count(*),"
            f" count(*) FILTER (WHERE sel{t}) FROM cand WHERE isfinite({expr}) GROUP BY 1 ORDER BY 1",
            [width, lo, width, bins - 1],
        ).fetchall()
        every, chosen = [0] * bins, [0] * bins
        for b, n, c in counts:
            every[b], chosen[b] = n, c
        edges = [lo + i * width for i in range(bins + 1)]
        return {"edges": [e if math.isfinite(e) else hi for e in edges], "all": every, "selected": chosen}

    def lengths(self, t: int, bins: int = 20) -> dict:
        """Response lengths (characters) of all candidates vs those iteration t selected: a selection much
        longer than its pool says the score partly rewards length."""
        if t not in self.iterations:
            raise ViewerError(f"no iteration {t} in this run (iterations: {self.iterations})")
        hi = self._sql("SELECT max(length(response)) FROM cand").fetchone()[0] or 1
        return self._bins("length(response)", t, 0, hi, bins)


def evaluation(run: RunDir) -> dict:
    """humback eval's metrics and each model's answers side by side, when the run was evaluated. Reads only
    eval/ (not the run's rows): a bad candidates file leaves this tab working."""
    ev = run.eval_dir
    if not (ev / "metrics.json").is_file():
        return {"metrics": None, "answers": []}
    metrics = read_json(ev / "metrics.json")
    if not isinstance(metrics, dict):
        raise RunFileError(
            f"{ev / 'metrics.json'}: expected a JSON object of metrics, got {type(metrics).__name__}"
        )
    by_model = {}
    for p in sorted((ev / "answers").glob("*.json")):
        rows = read_json(p)
        if not (
            isinstance(rows, list)
            and all(
                isinstance(r, dict) and isinstance(r.get("instruction"), str) and "output" in r for r in rows
            )
        ):
            raise RunFileError(f"{p}: expected a list of {{instruction, output}} objects")
        by_model[p.stem] = rows
    names = list(by_model)
    answers = (
        [
            {"instruction": rows[0]["instruction"], **{n: by_model[n][i]["output"] for n in names}}
            for i, rows in enumerate(zip(*by_model.values()))
        ]
        if by_model
        else []
    )
    return {"metrics": metrics, "models": names, "answers": answers}


def curves(run: RunDir) -> dict:
    """Training loss per model (models/*/humback_train.json) and, after `humback eval`, each iteration's
    judge ROC curve per signal (eval/calibration/iter<t>/scored.jsonl: labelled good and bad rows). A file
    that cannot be read is listed under `problems` and the rest is still drawn."""
    loss, problems = {}, []
    for p in sorted(run.models.glob("*/humback_train.json")):
        try:
            record = read_json(p)
            curve = record.get("loss_curve") if isinstance(record, dict) else None
            if not isinstance(curve, list):
                raise RunFileError(f"{p}: no 'loss_curve' list")
        except (RecordError, RunFileError) as e:
            problems.append(str(e))
            continue
        loss[p.parent.name] = [
            [e["step"], e["loss"]]
            for e in curve
            if isinstance(e, dict) and is_number(e.get("step")) and is_number(e.get("loss"))
        ]
    roc: dict[str, dict] = {}
    for p in sorted(run.eval_dir.glob("calibration/iter*/scored.jsonl")):
        try:
            rows = [r for r in read_jsonl(p) if r.get("label") in (0, 1)]
        except HumbackError as e:
            problems.append(str(e))
            continue
        roc[p.parent.name] = {
            name: _roc(
                [r["label"] for r in rows], [sign * r[name] if is_number(r.get(name)) else None for r in rows]
            )
            for name, sign in (("score", 1), ("ifd", -1), ("end_logprob", 1))
            if any(is_number(r.get(name)) for r in rows)
        }
    return {"loss": loss, "roc": roc, "problems": problems}


def _roc(labels: list[int], scores: list[float | None]) -> list[list[float]]:
    """ROC points (false positive rate, true positive rate); unscored rows ranked last, as selection does."""
    from sklearn.metrics import roc_curve

    if len(set(labels)) < 2:
        return []
    low = min((s for s in scores if s is not None), default=0.0) - 1.0
    fpr, tpr, _ = roc_curve(labels, [low if s is None else s for s in scores])
    return [[round(float(a), 4), round(float(b), 4)] for a, b in zip(fpr, tpr)]
