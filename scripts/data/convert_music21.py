"""Convert music21 corpus scores and ABC tunes to MIDI for `cargo xtask data`.

Reads a JSON-lines job list written by xtask/src/data/music21.rs. Each job is
one score file or one ABC tune; its result is `<out>/<key>.mid` plus
`<out>/<key>.json` (written last, so a job with a .json is done and a killed
run resumes where it stopped). A failed conversion records its error in the
.json and is not retried until the converter version changes.

Run with the project's virtual environment, music21 taken from the unpacked
pinned wheel:
    .venv/bin/python scripts/data/convert_music21.py --music21 DIR --jobs FILE --out DIR --workers N
"""

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time

# Bump with any change that alters the MIDI written; xtask hashes it into every key.
CONVERTER_VERSION = "music21-midi-2"
# Bump when a change may rescue conversions that failed (a new fallback, a
# longer time limit) without altering any MIDI that was written before: failed
# records of an older FALLBACKS_VERSION are retried, successes are kept.
FALLBACKS_VERSION = "2"
# A single score taking longer than this is recorded as failed rather than stalling the build.
MAX_JOB_S = 1800
# Seconds between progress lines.
PROGRESS_EVERY_S = 30.0

music21 = None


class JobTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise JobTimeout(f"conversion took longer than {MAX_JOB_S} s")


def _init_worker(music21_dir):
    global music21
    sys.path.insert(0, music21_dir)
    import music21 as m21  # noqa: E402  (the pinned wheel, not whatever is installed)

    music21 = m21
    signal.signal(signal.SIGALRM, _on_alarm)


def _as_score(obj):
    """An Opus (several X: tunes in one ABC file, e.g. the voices of a Josquin
    chanson) becomes one score with every tune's parts played together."""
    from music21 import stream

    if isinstance(obj, stream.Opus):
        score = stream.Score()
        for sub in obj.scores:
            parts = list(sub.parts) or [sub]
            for p in parts:
                score.insert(0, p)
        return score
    return obj


def _strip_repeats(score):
    """Remove repeat barlines, repeat expressions and volta brackets, so the
    MIDI plays the music once through."""
    from music21 import bar, repeat, spanner, stream

    removed = 0
    for m in score.recurse().getElementsByClass(stream.Measure):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(m, side), bar.Repeat):
                setattr(m, side, None)
                removed += 1
    for r in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        if r.activeSite is not None:
            r.activeSite.remove(r)
            removed += 1
    for sp in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        for site in list(sp.sites.get()):
            if isinstance(site, stream.Stream) and sp in site:
                site.remove(sp)
        removed += 1
    return removed


def _unshare(score):
    """music21's ABC reader can put one TimeSignature (or key, tempo) object
    into two measures; the MIDI conductor track then refuses it. Give every
    later occurrence its own copy; the music is unchanged."""
    import copy

    seen = set()
    fixed = 0
    for site in [score] + list(score.recurse(streamsOnly=True)):
        for el in list(site.getElementsByClass(["TimeSignature", "KeySignature", "MetronomeMark"])):
            if id(el) in seen:
                site.replace(el, copy.deepcopy(el))
                fixed += 1
            else:
                seen.add(id(el))
    return fixed


def _tidy_parts(score):
    """Drop parts without notes (an ABC tune's empty voice headers) and give
    measure-less parts measures, so repeats can be processed per part."""
    from music21 import stream

    changed = 0
    for p in list(score.parts):
        if not p.recurse().notes:
            score.remove(p)
            changed += 1
        elif not p.getElementsByClass(stream.Measure):
            p.makeMeasures(inPlace=True)
            changed += 1
    return changed


def _metadata(score):
    md = getattr(score, "metadata", None)
    if md is None:
        return {}
    out = {}
    for field in ("title", "movementName", "composer", "copyright"):
        try:
            value = getattr(md, field)
        except Exception:  # metadata fields differ between formats
            value = None
        if value:
            out[field] = str(value)
    if "title" not in out and "movementName" in out:
        out["title"] = out["movementName"]
    out.pop("movementName", None)
    return out


def _midi_bytes(score):
    from music21.midi import translate

    return translate.music21ObjectToMidiFile(score).writestr()


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def convert(job):
    """One job; returns (key, result dict). Never raises."""
    from music21 import converter

    key = job["key"]
    t0 = time.time()
    result = {"key": key, "version": CONVERTER_VERSION, "fallbacks": FALLBACKS_VERSION, "ok": False}
    signal.alarm(MAX_JOB_S)
    try:
        if job["kind"] == "abc":
            parsed = converter.parseData(job["text"], format="abc")
        else:
            parsed = converter.parse(job["source"], forceSource=True)
        score = _as_score(parsed)
        result.update(_metadata(score))
        unshared = _unshare(score)
        if unshared:
            result["unshared"] = unshared
        try:
            data = _midi_bytes(score)
            result["repeats"] = "as written"
        except JobTimeout:
            raise
        except Exception as e:  # repeat expansion is the usual culprit
            first = f"{type(e).__name__}: {e}"
            removed = _strip_repeats(score)
            try:
                data = _midi_bytes(score)
                result["repeats"] = f"removed {removed} repeat marks after: {first[:200]}"
            except JobTimeout:
                raise
            except Exception:
                tidied = _tidy_parts(score)
                data = _midi_bytes(score)
                result["repeats"] = (
                    f"removed {removed} repeat marks and tidied {tidied} empty or measure-less parts after: "
                    f"{first[:200]}"
                )
        _write_atomic(os.path.join(job["out"], key + ".mid"), data)
        result["ok"] = True
    except BaseException as e:  # record every failure, keep the pool alive
        if isinstance(e, KeyboardInterrupt):
            raise
        result["error"] = f"{type(e).__name__}: {e}"[:500]
    finally:
        signal.alarm(0)
    result["seconds"] = round(time.time() - t0, 3)
    _write_atomic(os.path.join(job["out"], key + ".json"), json.dumps(result, sort_keys=True).encode())
    return key, result


def _done(job):
    """A job is done when it succeeded, or failed with the current fallbacks."""
    try:
        with open(os.path.join(job["out"], job["key"] + ".json"), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return False
    return bool(rec.get("ok")) or rec.get("fallbacks") == FALLBACKS_VERSION


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--music21", required=True, help="folder holding the unpacked music21 package")
    ap.add_argument("--jobs", required=True, help="JSON-lines job list")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--print-version", action="store_true", help="print CONVERTER_VERSION and exit")
    args = ap.parse_args()
    if args.print_version:
        print(CONVERTER_VERSION)
        return 0
    with open(args.jobs, encoding="utf-8") as f:
        jobs = [json.loads(line) for line in f if line.strip()]
    todo = [j for j in jobs if not _done(j)]
    print(
        f"music21: {len(jobs) - len(todo)} of {len(jobs)} already converted, {len(todo)} to go",
        file=sys.stderr,
        flush=True,
    )
    if not todo:
        return 0
    _init_worker(args.music21)
    from music21 import __version__ as v

    print(
        f"music21: converting with music21 {v} from {args.music21}, {args.workers} worker(s)",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.time()
    last = t0
    done = failed = 0
    if args.workers > 1:
        pool = multiprocessing.Pool(
            args.workers, initializer=_init_worker, initargs=(args.music21,), maxtasksperchild=100
        )
        results = pool.imap_unordered(convert, todo, chunksize=1)
    else:
        pool = None
        results = map(convert, todo)
    for key, res in results:
        done += 1
        if not res["ok"]:
            failed += 1
        now = time.time()
        if now - last >= PROGRESS_EVERY_S or done == len(todo):
            last = now
            rate = done / max(now - t0, 1e-9)
            eta_min = (len(todo) - done) / max(rate, 1e-9) / 60
            print(
                f"music21: {done}/{len(todo)} converted ({failed} failed), {rate:.2f}/s, eta {eta_min:.0f} min",
                file=sys.stderr,
                flush=True,
            )
    if pool is not None:
        pool.close()
        pool.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
