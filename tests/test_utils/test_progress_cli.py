import io
import subprocess
import sys
import textwrap

from robustvit_mm.utils.progress import ProgressBar, StageLog


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_redraws_on_a_terminal_and_prints_lines_elsewhere():
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = ProgressBar(20, unit='images', file=stream)
        for _ in range(20):
            bar.update()
    assert tty.getvalue().count('\r') == 20 and tty.getvalue().endswith('\n')
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 10 and '\r' not in pipe.getvalue()   # every 10 % of the total
    assert lines[-1].startswith('[' + '>' * 30 + '] 20/20,') and 'images/s' in lines[-1]
    batches = io.StringIO()
    bar = ProgressBar(20, file=batches)
    for _ in range(7):
        bar.update(3)     # 3, 6, ..., 21: crosses a tenth of the total without landing on one
    assert [line.split(',')[0].split('] ')[1] for line in batches.getvalue().splitlines()] == \
        ['3/20', '6/20', '9/20', '12/20', '15/20', '18/20', '21/20']


def test_stage_log_lines_carry_the_elapsed_time():
    out = io.StringIO()
    log = StageLog(start=0.0, stream=out)
    log.live('not a terminal: nothing')
    log.line('stage done')
    assert out.getvalue().count('\n') == 1 and out.getvalue().rstrip().endswith('] stage done')


def run_tool_script(tmp_path, body):
    script = tmp_path / 'mytool.py'
    script.write_text(textwrap.dedent('''
        from robustvit_mm.utils.cli import run_tool, start_tool
        start_tool()
        def main(argv):
        ''') + textwrap.indent(textwrap.dedent(body), '    ') + '\nrun_tool(main)\n')
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True)


def test_user_error_is_one_line_with_status_2(tmp_path):
    proc = run_tool_script(tmp_path, '''
        try:
            open('/nonexistent/x')
        except OSError as e:
            raise ValueError('--config x.py: no such file') from e
        ''')
    assert proc.returncode == 2
    assert proc.stderr == 'mytool.py: error: --config x.py: no such file\n'


def test_success_and_bug(tmp_path):
    assert run_tool_script(tmp_path, 'return None').returncode == 0
    assert run_tool_script(tmp_path, 'return 3').returncode == 3
    bug = run_tool_script(tmp_path, 'raise KeyError("internal")')
    assert bug.returncode == 1 and 'Traceback' in bug.stderr   # a bug keeps its traceback
