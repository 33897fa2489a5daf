"""trevo.tables: one renderer for the terminal, Markdown and HTML tables, escaped for each."""

from __future__ import annotations

from trevo.cli import main
from trevo.tables import Markup, Table, escape_markdown, html_doc, html_table, markdown, markdown_doc, text


def test_text_tables_align_their_columns():
    t = Table(["name", "n"], [["a", "1,000"], ["bbbb", "2"]], left={0})
    assert text(t).splitlines() == ["name      n", "----  -----", "a     1,000", "bbbb      2"]
    cut = Table(["name", "note"], [["x" * 10, "y" * 30]], left={0, 1}, max_width=4)
    assert text(cut).splitlines()[2] == "xxxx  " + "y" * 30  # the last column is never cut


def test_markdown_escapes_what_would_be_markup():
    assert escape_markdown("softmax_attention") == "softmax_attention"  # an inner underscore is no markup
    assert escape_markdown("_x_ *y* `z` <b> [l](u) a|b &amp; #h ~~s~~") == (
        r"\_x\_ \*y\* \`z\` \<b\> \[l\](u) a\|b \&amp; \#h \~\~s\~\~")
    assert escape_markdown("two\nlines") == "two lines"
    t = Table(["label", "value"], [["<i>x</i>", "1|2"]])
    assert markdown(t) == "| label | value |\n|---|---|\n| \\<i\\>x\\</i\\> | 1\\|2 |"


def test_html_escapes_cells_and_renders_trevo_prose():
    t = Table(["a"], [["<script>"]])
    assert html_table(t) == ("<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>&lt;script&gt;</td></tr>"
                             "</tbody></table>")
    page = html_doc(["Run `trevo bench` **now** <x>", "- one\n- two", t])
    assert "<p>Run <code>trevo bench</code> <b>now</b> &lt;x&gt;</p>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert markdown_doc(["para", t]).startswith("para\n\n| a |")


def test_bench_html_is_rendered_from_the_rows_not_from_markdown(tmp_path):
    from trevo.bench import output, report

    meta = {"bench": "mixers", "mode": "fwd", "device": "cpu", "device_name": "x", "dtype": "float32", "torch": "t",
            "threads": 1, "d_model": 8, "batch": 1, "matmul_flop_s": 1e9, "matmul_shape": "(1, 1)",
            "memory_method": "", "date": "2024"}
    rows = [{"mixer": "a|b <c>", "length": 8, "status": "error", "reason": "x | y", "ms": None}]
    output.write_results({"meta": meta, "rows": rows}, tmp_path, "mixers-fwd")
    page = report.html_section(tmp_path)
    assert "<td>a|b &lt;c&gt;</td>" in page and "<td>x | y</td>" in page  # the cells as data, one each
    assert r"| a\|b \<c\> | 8 | error |" in report.markdown_section(tmp_path)


def test_trevo_list_is_a_text_table(capsys):
    assert main(["list", "--kind", "norm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["kind", "name", "family", "capabilities", "forms", "time", "paper"]
    assert set(lines[1]) <= {"-", " "} and any(line.split()[:2] == ["norm", "rmsnorm"] for line in lines[2:])


def test_markup_cells_keep_their_html_and_show_their_text_elsewhere():
    link = Markup("arXiv:1706.03762", "<a href='https://arxiv.org/abs/1706.03762'>arXiv:1706.03762</a>")
    t = Table([], [["paper", link], ["<b>", "x"]])
    assert html_table(t) == ("<table><tbody><tr><td>paper</td><td><a href='https://arxiv.org/abs/1706.03762'>"
                             "arXiv:1706.03762</a></td></tr><tr><td>&lt;b&gt;</td><td>x</td></tr></tbody></table>")
    assert markdown(t).splitlines()[2] == "| paper | arXiv:1706.03762 |"  # a blank header row above
    assert text(t).splitlines()[2].split() == ["paper", "arXiv:1706.03762"]
