"Run a function in a fork of the pytest worker, which has the heavy libraries imported already."
import importlib, multiprocessing, os, traceback

# Imported once per pytest worker; a fork starts with them, which spares each chapter run or docs build the
# 7-9 s a fresh process spends importing them (and exiting), and keeps what it does out of the worker.
PRELOADED = ("torch", "transformers", "sentence_transformers", "datasets", "pandas", "matplotlib.pyplot",
             "nbdev.test", "nbdev.serve", "reranker_tune.cli", "reranker_tune.export")

def _child(function, args, sender):
    "In the forked child: call `function`, send (True, its result) or (False, the traceback), exit at once."
    try: result = (True, function(*args))
    except BaseException: result = (False, traceback.format_exc()[-4000:])
    sender.send(result); sender.close()
    os._exit(0) # no interpreter teardown: the worker that forked us still owns everything

def run_forked(function, *args, timeout: float=900) -> tuple[bool, object]: # returned, result or why not
    "`function(*args)` in a fork of this process with `PRELOADED` imported first."
    for module in PRELOADED: importlib.import_module(module)
    fork = multiprocessing.get_context("fork")
    receiver, sender = fork.Pipe(duplex=False)
    child = fork.Process(target=_child, args=(function, args, sender))
    child.start(); sender.close()
    try:
        if not receiver.poll(timeout): return False, f"{function.__name__} ran past {timeout:.0f} s"
        return receiver.recv()
    except EOFError:
        child.join(5); return False, f"the forked process died (exit code {child.exitcode})"
    finally:
        if child.is_alive(): child.kill()
        child.join()
