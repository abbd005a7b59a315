"""Starting and stopping a `vllm serve` child process for the vLLM engine.

vLLM lives in its own virtual environment (`make vllm` builds `.venv-vllm`,
see docs/vllm.md), so the server is a child process started from a
configurable command, never an import. It runs in a new process group so that
stopping it also stops the engine-core worker it forks; its output goes to a
log file whose tail is shown when start-up fails.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from continualcode.engines.base import EngineError

CHECKOUT_VLLM = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "vllm"
"""Where `make vllm` puts the executable in a source checkout."""

START_TIMEOUT_S = 180.0
"""Start-up took 26-30 s on a quiet 2-core machine (docs/vllm.md); six times that for a busy one."""

FALLBACK_HINT = "or continue with `--engine embedded`"


def find_vllm_command(command: str) -> list[str]:
    """The argv prefix that runs vLLM: `command` as configured, or the checkout's `.venv-vllm`
    when the default `vllm` is not on PATH."""
    argv = shlex.split(command)
    if not argv:
        raise EngineError(f"vllm_command is empty; set it to the vllm executable {FALLBACK_HINT}")
    if shutil.which(argv[0]):
        return argv
    if argv == ["vllm"] and CHECKOUT_VLLM.is_file():
        return [str(CHECKOUT_VLLM)]
    raise EngineError(
        f"vLLM executable {argv[0]!r} not found. Install it with `make vllm` and pass "
        f"`--vllm-command {CHECKOUT_VLLM}`, {FALLBACK_HINT}."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_argv(command: list[str], model_path: str, served_name: str, port: int, max_lora_rank: int) -> list[str]:
    """`vllm serve` flags that worked on CPU (docs/vllm.md): bf16, 2k context, two LoRA slots
    (the live adapter and the one replacing it)."""
    return [
        *command, "serve", model_path,
        "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", served_name,
        "--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", "2",
        "--dtype", "bfloat16", "--max-model-len", "2048",
    ]


def serve_env() -> dict[str, str]:
    """Runtime LoRA loading is off unless this variable is set; the CPU backend's KV cache
    defaults to 4 GiB, too much beside a trainer on a small machine (1 GiB holds ~44k tokens)."""
    env = dict(os.environ)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


class VLLMServer:
    """A `vllm serve` child process on 127.0.0.1; `stop()` ends its whole process group."""

    def __init__(self, argv: list[str], port: int, env: dict[str, str] | None = None):
        self.argv = argv
        self.url = f"http://127.0.0.1:{port}"
        handle, name = tempfile.mkstemp(prefix="continualcode-vllm-", suffix=".log")
        self.log_path = Path(name)
        self._stopped = False
        try:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )
        except OSError as exc:
            os.close(handle)
            raise EngineError(f"cannot start `{shlex.join(argv[:2])}`: {exc}; install vLLM with `make vllm` {FALLBACK_HINT}") from exc
        os.close(handle)
        atexit.register(self.stop)

    @classmethod
    def start(cls, command: str, model_path: str, served_name: str, max_lora_rank: int,
              timeout: float = START_TIMEOUT_S) -> "VLLMServer":
        port = free_port()
        server = cls(serve_argv(find_vllm_command(command), model_path, served_name, port, max_lora_rank),
                     port, serve_env())
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop(keep_log=True)  # the error message points at the log
            raise
        return server

    def wait_healthy(self, timeout: float) -> float:
        """Poll `GET /health` until it answers 200; seconds waited. Raises EngineError with the
        log's tail if the child exits first or the timeout passes."""
        started = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:
                raise EngineError(f"vLLM server exited with code {code} during start-up "
                                  f"({FALLBACK_HINT}). Last lines of {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2.0) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - started > timeout:
                raise EngineError(f"vLLM server not healthy after {timeout:.0f} s ({FALLBACK_HINT}). "
                                  f"Last lines of {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 15.0, keep_log: bool = False) -> None:
        """SIGTERM to the process group, SIGKILL after `grace` seconds; removes the log
        unless `keep_log`. Idempotent."""
        atexit.unregister(self.stop)
        if self._stopped:
            return
        self._stopped = True
        if not keep_log:
            self.log_path.unlink(missing_ok=True)  # the open log stays writable until exit
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The engine-core worker can outlive the API process; the group id stays reserved
        # while any member lives, so this reaches only our own leftovers.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
