"""minigcnc/startup.py: Ctrl-C while a figure command starts ends it in one line; a library import is left alone."""
import pytest


def test_ctrl_c_while_a_figure_command_starts_ends_with_one_line_and_an_import_is_left_alone():
    import signal

    from minigcnc import startup

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert not startup.quiet_interrupt_while_starting(["python", "-c", "import minigcnc"])
        assert not startup.quiet_interrupt_while_starting(["python", "-m", "pytest"])
        assert signal.getsignal(signal.SIGINT) is old[signal.SIGINT]
        assert startup.quiet_interrupt_while_starting(["python", "-m", "minigcnc.figure3", "--scale", "tiny"])
        handler = signal.getsignal(signal.SIGINT)
        with pytest.raises(SystemExit) as stop:
            handler(signal.SIGINT, None)
        assert str(stop.value) == ("\npython -m minigcnc.figure3: interrupted while starting: no run had started, "
                                   "nothing to keep.")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
