"""Child process for the session-log tests: python _child.py ROOT SCENARIO [N]."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from loguru import logger

from quantnb.config import StageParams
from quantnb.runs import start_run, worker_initializer


class ChildParams(StageParams):
    stage = "child"
    n_lines: int = 0


def worker_task(i: int) -> int:
    logger.info("worker line {}", i)
    print(f"worker print {i}")
    logging.getLogger("thirdparty.worker").warning("worker stdlib warning {}", )
    return i


def main() -> None:
    root, scenario = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    params = ChildParams(project_dir=root, n_lines=n, console_level=None,
                         third_party_levels={"chatty": "INFO"})
    ctx = start_run(params)
    os.write(1, f"LOG {ctx.log_path}\n".encode())
    if scenario == "streams":
        logger.info("loguru record")
        logging.getLogger("thirdparty").info("third-party info hidden")
        logging.getLogger("thirdparty").warning("third-party warning shown")
        logging.getLogger("chatty").info("chatty info shown")
        print("plain print")
        sys.stderr.write("stderr text\n")
        warnings.warn("careful now", stacklevel=1)
        print("secret is", os.environ.get("QUANTNB_TEST_API_KEY"))
        logger.info("secret in record {}", os.environ.get("QUANTNB_TEST_API_KEY"))
        with ProcessPoolExecutor(2, mp_context=get_context("spawn"), initializer=worker_initializer,
                                 initargs=ctx.worker_initargs()) as pool:
            list(pool.map(worker_task, range(3)))
        raise RuntimeError("boom uncaught")
    if scenario == "flood":
        for i in range(n):
            logger.info("line {:08d}", i)
            os.write(1, f"ACK {i}\n".encode())  # only after the logging call returned
            ctx.item_done(f"item-{i}", events=1)


if __name__ == "__main__":
    main()
