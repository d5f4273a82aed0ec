"""The click group, shared option decorators and error mapping; commands live in ganscan/commands/."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterable

import click

from ganscan import __version__
from ganscan.errors import GanscanError

# each command is the module of its name in ganscan.commands, imported only when it runs (a fast --help)
COMMANDS = ("scan", "models", "train", "evaluate", "generate", "gan", "report", "explain", "twins")

EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE, EXIT_FAKE_FOUND = 0, 1, 2, 3

HEAVY_COMMANDS = {"scan", "train", "evaluate", "generate", "gan", "twins"}

TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"ganscan.commands.{name}").command

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            from ganscan.errors import suggest

            if args and not args[0].startswith("-"):
                close = suggest(args[0], self.list_commands(ctx))
                if close:
                    raise click.UsageError(f"No such command {args[0]!r}. Did you mean {close!r}?", ctx) from None
            raise exc

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GanscanError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
            raise
        except Exception as exc:  # a bug, not the user's doing: one line, unless --debug asks for the traceback
            if (ctx.obj or {}).get("debug") or os.environ.get("GANSCAN_DEBUG") == "1":
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise click.ClickException(
                f"internal error: {type(exc).__name__}{': ' + first if first else ''} "
                "(this is a bug in ganscan; rerun with --debug for the traceback)") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="ganscan")
@click.option("--debug", is_flag=True, help="Show the full traceback of an internal error.")
@click.pass_context
def cli(ctx, debug):
    """ganscan: tell GAN-generated images from real photographs.

    \b
    Examples:
      ganscan scan ./photos                   # table on a terminal, JSON Lines when piped
      ganscan scan ./photos -o report.parquet # a report with scores, hashes and EXIF
      ganscan models                          # architectures and shipped weights

    Exit codes: 0 done (files that could not be read are error rows, not failures), 1 user error,
    2 usage error, 3 a fake was found with --fail-on-fake.

    Shell completion (bash): eval "$(_GANSCAN_COMPLETE=bash_source ganscan)"; for zsh use zsh_source,
    for fish: _GANSCAN_COMPLETE=fish_source ganscan | source.
    """
    ctx.ensure_object(dict)["debug"] = debug


# --- shared option decorators -----------------------------------------------------------------------

class TableChoice(click.Choice):
    """click.Choice over a library table, read when first needed (help, parsing, completion), so that
    listing the commands imports no model code."""

    def __init__(self, table: Callable[[], Iterable[str]]):
        self._table, self.case_sensitive = table, True

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._table())


class TableOption(click.Option):
    """An option whose shown default is read from a library table when help is shown: ``shown(name)`` (None:
    none shown). Its own default stays None: the library fills in what was not given."""

    def __init__(self, *decls, shown: Callable[[str], object], **kwargs):
        super().__init__(*decls, **kwargs)
        self._shown = shown

    def get_help_record(self, ctx):
        saved = self.default, self.show_default
        self.default = self._shown(self.name)
        self.show_default = self.default is not None
        try:
            return super().get_help_record(ctx)
        finally:
            self.default, self.show_default = saved


def device_options(fn=None, *, auto: str = "auto: AMP on CUDA, bf16 on CPUs with native bf16, else fp32."):
    """--device and --precision; ``auto`` says what --precision auto means for the command."""
    if fn is None:
        return lambda f: device_options(f, auto=auto)
    fn = click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
                      show_default=True, help=auto)(fn)
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
                        help="Where the model runs.")(fn)


def guard_options(fn):
    """Per-file limits for commands that decode files they are given: a crash, a hang or a file too
    large for memory costs that file a one-line error, never the command."""
    from ganscan.data.decode import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_DECODE_BYTES

    fn = click.option("--max-decode-mb", type=click.IntRange(1), default=DEFAULT_MAX_DECODE_BYTES // 2 ** 20,
                      show_default=True, metavar="MB",
                      help="Memory guard: refuse, before decoding, an image that would need more (estimated "
                           "from its header: size and pixel format).")(fn)
    return click.option("--file-timeout", type=click.FloatRange(0, min_open=True), default=DEFAULT_FILE_TIMEOUT,
                        show_default=True, metavar="SECONDS",
                        help="A file whose decoding takes longer gets an error; the run goes on.")(fn)


def loader_options(fn):
    fn = click.option("--workers", type=click.IntRange(0, 256), default=None,
                      help="Decoding worker processes (default: number of cores).")(fn)
    return click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)(fn)


def quiet_option(fn):
    def callback(ctx, param, value):
        from ganscan.console import set_quiet

        set_quiet(value)
        return value

    return click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True, callback=callback,
                        help="No progress bar or summary (warnings and errors still show).")(fn)


# --- entry point ------------------------------------------------------------------------------------

def _maybe_use_tcmalloc(argv: list[str]) -> None:
    """Re-run under tcmalloc for heavy commands: glibc malloc makes PyTorch CPU inference several
    times slower on small VMs. Opt out with GANSCAN_ALLOCATOR=system."""
    if (os.environ.get("GANSCAN_ALLOCATOR", "tcmalloc") == "system" or os.environ.get("_GANSCAN_REEXEC")
            or not argv or argv[0] not in HEAVY_COMMANDS or sys.platform != "linux"
            or "tcmalloc" in os.environ.get("LD_PRELOAD", "")):
        return
    lib = next((p for p in TCMALLOC_CANDIDATES if os.path.exists(p)), None)
    if lib is None:
        return
    env = dict(os.environ, _GANSCAN_REEXEC="1",
               LD_PRELOAD=(lib + " " + os.environ.get("LD_PRELOAD", "")).strip())
    try:
        os.execve(sys.executable, [sys.executable, "-m", "ganscan", *argv], env)
    except OSError:
        return  # carry on with the system allocator


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    _maybe_use_tcmalloc(argv)
    cli.main(args=argv, prog_name="ganscan")


if __name__ == "__main__":
    main()
