"""A pre-imported `realign` process that forks one child per request (tests only).

Importing torch and transformers costs ~10 s on the 2-core test machine; the kill tests need
dozens of `realign score` / `realign train` processes. This helper imports everything once,
then for each request forks a child that runs the real CLI entry point
(``realign.cli.main()`` with ``sys.argv`` set, its own stdout/stderr files, cwd and
environment) or a short Python snippet, and reports the child's pid and then its exit status
(negative: killed by that signal). The child is an ordinary process: a SIGKILL sent to its pid
kills it exactly as it would kill ``python -m realign``.

Protocol (one JSON object per line): request on stdin, ``{"pid": N}`` then
``{"status": S}`` on stdout. The parent only imports modules, never runs a torch op, so no
thread pool exists at fork time.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def _child(req: dict) -> None:
    code = 1
    try:
        os.chdir(req.get("cwd") or os.getcwd())
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(handle, fd)
            os.close(handle)
        for key in req.get("unset", []):
            os.environ.pop(key, None)
        os.environ.update(req.get("env", {}))
        try:
            if "argv" in req:
                sys.argv = ["realign", *req["argv"]]
                from realign.cli import main

                main()
            else:
                exec(compile(req["code"], "<zygote snippet>", "exec"), {"__name__": "__zygote__"})
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - shown like the interpreter would
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    import realign.cli  # noqa: F401
    import realign.evaluate.run  # noqa: F401
    import realign.score.run  # noqa: F401
    import realign.score.scorer  # noqa: F401
    import realign.judges.openai_compat  # noqa: F401
    import realign.judges.chat_client  # noqa: F401
    import realign.modeling.loading  # noqa: F401
    import realign.train.run  # noqa: F401
    import realign.triage.run  # noqa: F401
    import accelerate  # noqa: F401
    import openai  # noqa: F401
    import peft  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer  # noqa: F401

    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(req)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
