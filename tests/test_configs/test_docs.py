"""The documentation: what it cites of the paper exists there, its links land, its set-up commands
are the ones CI runs.

The paper's numbering (Chefer, Schwartz, Wolf, NeurIPS 2022, main text and appendices): Sections 1-6
(no numbered subsections), eq. 1-10, Tables 1-12, Figures 1-15, Appendices A-J. What each equation
is: eq. 1 L_bg, eq. 2 L_fg, eq. 3 L_relevance, eq. 4 L_classification (confidence boosting),
eq. 5 the overall loss (Section 3); eq. 6-7 GAE (Appendix B); eq. 8 the baselines'
ground-truth CE, eq. 9 GradMask, eq. 10 RRR (Appendix C).
"""
import os.path as osp
import re
from glob import glob

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

SECTIONS = range(1, 7)
EQUATIONS = range(1, 11)
TABLES = range(1, 13)
FIGURES = range(1, 16)
APPENDICES = 'ABCDEFGHIJ'

# Words of which one must appear beside a citation of each equation (same or previous line):
# an equation number that names another equation's term fails.
EQUATION_TERMS = {
    1: r'background|L_bg|\bbg\b',
    2: r'foreground|L_fg|\bfg\b',
    3: r'L_relevance|relevance loss|L_seg|λ_bg|λ_fg|lambda_bg|loss weights',
    4: r'classification|confidence|L_cls|argmax|temperature|\bT\b',
    5: r'overall|total|λ_relevance|λ_classification|lambda_seg|lambda_acc|0\.8|0\.2|loss weights',
    6: r'GAE|attention|∇A|Ā',
    7: r'GAE|attention|propagat|aggregat|Ā',
    8: r'ground[- ]truth|\bGT\b|GradMask|RRR|baseline|\bCE\b|cross-entropy',
    9: r'GradMask',
    10: r'RRR|Right for the Right Reasons',
}

NUMBER_LIST = r'(\d+(?:\.\d+)?(?:\s*(?:-|–|,|/|and|or)\s*\d+(?:\.\d+)?)*)'
CITATION = re.compile(
    r'\b(?P<kind>Tables?|Tab\.|[Ee]qs?\.|[Ee]quations?|Sections?|Sec\.|Figures?|Figs?\.)\s*\(?'
    + NUMBER_LIST)
APPENDIX = re.compile(r'\b(?:Appendix|Appendices|App\.)\s+((?:[A-Z](?:\s*(?:-|–|,|and)\s*)?)+)\b')


def doc_files():
    """README, CONTRIBUTING, docs/ and the configs' READMEs and comments."""
    files = [osp.join(REPO, 'README.md'), osp.join(REPO, 'CONTRIBUTING.md')]
    files += sorted(glob(osp.join(REPO, 'docs', '*.md')))
    files += sorted(glob(osp.join(REPO, 'configs', '**', '*.md'), recursive=True))
    files += sorted(glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True))
    return files


def markdown_files():
    return [f for f in doc_files() if f.endswith('.md')]


def rel(path):
    return osp.relpath(path, REPO)


def expand(numbers):
    """'1-2, 4 and 10-11' -> [1, 2, 4, 10, 11] (decimals kept as strings to be refused)."""
    values = []
    for part in re.split(r'\s*(?:,|/|and|or)\s*', numbers.strip()):
        ends = re.split(r'\s*[-–]\s*', part)
        if any('.' in end for end in ends):
            values.append(part)
            continue
        low, high = int(ends[0]), int(ends[-1])
        values += list(range(low, high + 1)) if high >= low else [low, high]
    return values


def paper_citations(text):
    """(line number, kind, numbers, line) of every cited table, equation, section and figure."""
    for number, line in enumerate(text.splitlines(), 1):
        for match in CITATION.finditer(line):
            kind = match.group('kind').lower().rstrip('s.').replace('equation', 'eq')
            kind = {'tab': 'table', 'e': 'eq', 'eq': 'eq', 'sec': 'section', 'sectio': 'section',
                    'fig': 'figure', 'figure': 'figure', 'table': 'table'}.get(kind, kind)
            yield number, kind, expand(match.group(2)), line


def test_expand_reads_the_citation_forms_the_docs_use():
    assert expand('1-2, 3, 4 and 10-11') == [1, 2, 3, 4, 10, 11]
    assert expand('6 and 7') == [6, 7] and expand('3/6') == [3, 6] and expand('4.3') == ['4.3']
    found = list(paper_citations('Tables 10-11 and Table 5; eq. 6-7 (Appendix B), Sec. 4.3'))
    assert [(kind, nums) for _, kind, nums, _ in found] == [
        ('table', [10, 11]), ('table', [5]), ('eq', [6, 7]), ('section', ['4.3'])]


def code_files():
    """The package, the tools and the tests: their docstrings and comments cite the paper too."""
    files = glob(osp.join(REPO, 'robustvit_mm', '**', '*.py'), recursive=True)
    files += glob(osp.join(REPO, 'tools', '*.py'))
    files += glob(osp.join(REPO, 'tests', '**', '*.py'), recursive=True)
    return sorted(f for f in files if f != osp.abspath(__file__))


@pytest.mark.parametrize('path', doc_files() + ['code, tools and tests'],
                         ids=lambda p: rel(p) if osp.isabs(p) else p)
def test_every_cited_table_equation_section_and_figure_exists_in_the_paper(path):
    if path == 'code, tools and tests':
        wrong = []
        for code in code_files():
            wrong += citations_not_in_the_paper(code)
    else:
        wrong = citations_not_in_the_paper(path)
    assert not wrong, '\n'.join(wrong)


def citations_not_in_the_paper(path):
    valid = dict(table=TABLES, eq=EQUATIONS, section=SECTIONS, figure=FIGURES)
    wrong = []
    with open(path, encoding='utf-8') as f:
        text = f.read()
    for number, kind, values, line in paper_citations(text):
        for value in values:
            if not isinstance(value, int) or value not in valid[kind]:
                wrong.append(f'{rel(path)}:{number}: {kind} {value} is not in the paper: '
                             f'{line.strip()}')
    for number, line in enumerate(text.splitlines(), 1):
        for match in APPENDIX.finditer(line):
            for letter in re.findall(r'[A-Z]', match.group(1)):
                if letter not in APPENDICES:
                    wrong.append(f'{rel(path)}:{number}: Appendix {letter} is not in the paper')
    return wrong


@pytest.mark.parametrize('path', doc_files(), ids=rel)
def test_each_cited_equation_is_the_one_of_the_term_it_is_cited_for(path):
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    wrong = []
    for number, kind, values, line in paper_citations('\n'.join(lines)):
        if kind != 'eq':
            continue
        context = lines[number - 2] + ' ' + line if number > 1 else line
        for value in values:
            if value in EQUATION_TERMS and not re.search(EQUATION_TERMS[value], context, re.I):
                wrong.append(f'{rel(path)}:{number}: eq. {value} is not about what this line '
                             f'names: {line.strip()}')
    assert not wrong, '\n'.join(wrong)


def test_the_check_fails_on_a_wrong_equation_or_table_number(tmp_path):
    """The two checks above, run on lines with the numbering mistakes they exist to catch."""
    bad = ('GAE relevance (paper eq. 1-2) is R = I\n'
           'the background term penalises relevance outside the object (eq. 4)\n'
           'the ablations of Table 4 (paper Section 4.3); Table 13; Appendix K\n')
    found = list(paper_citations(bad))
    lines = bad.splitlines()
    mismatched = [(n, v) for n, kind, values, _ in found if kind == 'eq' for v in values
                  if not re.search(EQUATION_TERMS[v], lines[n - 1], re.I)]
    assert mismatched == [(1, 1), (1, 2), (2, 4)]
    valid = dict(table=TABLES, eq=EQUATIONS, section=SECTIONS)
    out_of_range = [v for _, kind, values, _ in found for v in values
                    if not isinstance(v, int) or v not in valid[kind]]
    assert out_of_range == ['4.3', 13]
    assert [m.group(1) for m in APPENDIX.finditer(bad)] == ['K']


def anchors_of(path):
    """Explicit <a id="..."> anchors and GitHub's slugs of the headings of a markdown file."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    anchors = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r'^#+ (.+)$', text, re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
        anchors.add(slug)
    return anchors


def test_faithfulness_anchors_cited_anywhere_exist():
    """Code, configs, tests and docs cite docs/faithfulness.md#<anchor>; each anchor is there."""
    anchors = anchors_of(osp.join(REPO, 'docs', 'faithfulness.md'))
    missing = []
    for folder in ('robustvit_mm', 'configs', 'tests', 'tools', 'docs'):
        for path in glob(osp.join(REPO, folder, '**', '*.*'), recursive=True):
            if not path.endswith(('.py', '.md', '.json')):
                continue
            with open(path, encoding='utf-8') as f:
                for anchor in re.findall(r'faithfulness\.md#([\w-]+)', f.read()):
                    if anchor not in anchors:
                        missing.append(f'{rel(path)}: faithfulness.md#{anchor}')
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        missing += [f'README.md: #{a}' for a in re.findall(r'faithfulness\.md#([\w-]+)', f.read())
                    if a not in anchors]
    assert not missing, '\n'.join(missing)


@pytest.mark.parametrize('path', markdown_files(), ids=rel)
def test_relative_links_land_on_a_file_and_anchor(path):
    with open(path, encoding='utf-8') as f:
        text = re.sub(r'^(    |\t).*$', '', f.read(), flags=re.M)  # code blocks hold no links
    broken = []
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+://', target):
            continue
        file_part, _, anchor = target.partition('#')
        linked = osp.normpath(osp.join(osp.dirname(path), file_part)) if file_part else path
        if not osp.exists(linked):
            broken.append(f'{rel(path)}: {target} (no file {rel(linked)})')
        elif anchor and linked.endswith('.md') and anchor not in anchors_of(linked):
            broken.append(f'{rel(path)}: {target} (no anchor #{anchor} in {rel(linked)})')
    assert not broken, '\n'.join(broken)


@pytest.mark.parametrize('path', markdown_files(), ids=rel)
def test_every_doc_starts_with_its_one_title(path):
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    in_fence = False
    titles = []
    for line in lines:
        if line.startswith('```'):
            in_fence = not in_fence
        elif not in_fence and re.match(r'# \S', line):
            titles.append(line)
    assert lines and re.match(r'# \S', lines[0]), f'{rel(path)} starts with {lines[0]!r}'
    assert len(titles) == 1, f'{rel(path)} has {len(titles)} top-level titles: {titles}'


def code_blocks(text):
    """The indented code blocks of a markdown text, in order."""
    blocks, current = [], []
    for line in text.splitlines() + ['']:
        if line.startswith('    '):
            current.append(line[4:])
        elif current and line.strip():
            blocks.append('\n'.join(current).strip())
            current = []
    return blocks


def test_readme_opens_with_the_two_set_up_commands_and_ci_runs_the_second():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        blocks = code_blocks(f.read())
    install = 'python3 -m venv .venv && .venv/bin/pip install -r requirements'
    assert blocks[0].startswith(install) and blocks[0].endswith('.venv/bin/python tools/demo.py')
    assert blocks[1].startswith(install) and blocks[1].endswith('-m pytest tests -q')
    with open(osp.join(REPO, '.ci', 'run'), encoding='utf-8') as f:
        assert blocks[1] in f.read().splitlines(), 'CI must run the README test command verbatim'


@pytest.mark.parametrize('path', markdown_files(), ids=rel)
def test_docs_teach_one_name_per_explainer(path):
    """gae / attention_rollout / raw_attention: the short aliases are not taught as method names."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    refusal = re.compile(r'Error|refused|is called')  # a row that shows the alias being refused
    aliases = [alias for line in lines if not refusal.search(line)
               for alias in re.findall(r"""['"`](rollout|raw)['"`]""", line)]
    assert not aliases, f'{rel(path)} teaches {aliases}; use attention_rollout / raw_attention'


CONFIG_KEYS = {'test_dataloader', 'test_evaluator', 'test_cfg', 'test_pipeline'}


@pytest.mark.parametrize('path', markdown_files(), ids=rel)
def test_tests_the_docs_name_exist(path):
    """A test file or test function a doc names as its evidence is there (docs/reliability.md's
    test column among them)."""
    test_files = glob(osp.join(REPO, 'tests', '**', '*.py'), recursive=True)
    defined = set()
    for test_file in test_files:
        with open(test_file, encoding='utf-8') as f:
            defined |= set(re.findall(r'^def (test_\w+)', f.read(), re.M))
    with open(path, encoding='utf-8') as f:
        text = f.read()
    missing = [p for p in re.findall(r'tests/[\w/]+\.py', text)
               if not osp.exists(osp.join(REPO, p))]
    missing += [name for name in re.findall(r'(?<![\w/.])(test_\w+)(?![\w/]|\.py)', text)
                if name not in defined and name not in CONFIG_KEYS]
    assert not missing, f'{rel(path)} names tests that do not exist: {sorted(set(missing))}'


@pytest.mark.parametrize('path', markdown_files(), ids=rel)
def test_files_of_this_repository_the_docs_name_exist(path):
    """configs/, tools/ and robustvit_mm/ files a doc names are there (mmpretrain's own tools, named
    as "mmpretrain's `tools/...`", are not ours to check)."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    named = re.findall(r"(?<![\w/.])(?<!mmpretrain's `)((?:configs|tools|robustvit_mm)/[\w./-]+"
                       r'\.(?:py|json|sh))', text)
    missing = sorted({p for p in named if not osp.exists(osp.join(REPO, p))})
    assert not missing, f'{rel(path)} names files that do not exist: {missing}'


def test_readme_lists_every_registered_name_in_its_registry():
    """README's table of registered names is the package's registrations, each in its registry."""
    import mmpretrain.registry as registries

    import robustvit_mm  # noqa: F401  (registers everything)
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    table = text[text.index('| registered name | registry |'):]
    table = table[:table.index('\n\n')].splitlines()[2:]
    listed = set()
    for row in table:
        names, registry = [cell.strip() for cell in row.strip('|').split('|')][:2]
        for name in re.findall(r'`(\w+)`', names):
            assert getattr(registries, registry).get(name) is not None, (name, registry)
            listed.add((registry, name))
    kinds = ('MODELS', 'DATASETS', 'TRANSFORMS', 'METRICS', 'HOOKS', 'LOG_PROCESSORS')
    ours = {(registry, name) for registry in kinds
            for name, cls in getattr(registries, registry).module_dict.items()
            if cls.__module__.startswith('robustvit_mm')}
    assert listed == ours, f'registered but not in README: {sorted(ours - listed)}'


def test_reliability_rows_are_case_message_test():
    """docs/reliability.md: one row per failure case, its message, and the test that checks it."""
    with open(osp.join(REPO, 'docs', 'reliability.md'), encoding='utf-8') as f:
        text = f.read()
    table = text[text.index('| case | message the user sees | test'):]
    rows = table[:table.index('\n\n')].splitlines()[2:]
    assert len(rows) >= 30
    for row in rows:
        cells = re.split(r'(?<!\\)\|', row.strip())[1:-1]
        assert len(cells) == 3, f'not case | message | test: {row[:120]}'
        assert re.search(r'\btest_\w+', cells[2]), f'no test named: {row[:120]}'


def test_readme_new_backbone_example_is_the_config_less_its_comments():
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    match = re.search(r'The whole of `(configs/[\w/.-]+\.py)`, less its comments:', text)
    block = code_blocks(text[match.end():])[0]

    def code_lines(source):
        lines = (re.sub(r'\s+#.*$', '', line).rstrip() for line in source.splitlines())
        return [line for line in lines if line and not line.lstrip().startswith('#')]

    with open(osp.join(REPO, match.group(1)), encoding='utf-8') as f:
        assert code_lines(block) == code_lines(f.read())


def test_configs_readme_lr_and_temperature_are_the_configs():
    """configs/robustvit/README.md's table says what each config trains with."""
    from mmengine.config import Config
    folder = osp.join(REPO, 'configs', 'robustvit')
    with open(osp.join(folder, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    row = r'^\| [^|]+ \| `([\w.-]+\.py)` \| [^|]+ \| ([\d.e-]+) \| ([\d.]+) \|$'
    rows = re.findall(row, text, re.M)
    assert len(rows) == 9
    for config, lr, temperature in rows:
        cfg = Config.fromfile(osp.join(folder, config))
        loss = cfg.model.get('head') if cfg.model.get('head') else cfg.model.loss
        configured = (cfg.optim_wrapper.optimizer.lr, loss.temperature)
        assert configured == (float(lr), float(temperature)), config


def demo_numbers(text, first_header):
    """{(metric, arm position): cells} of the per-seed table that starts with ``first_header``."""
    table = text[text.index(first_header):]
    rows = table[:table.index('\n\n')].splitlines()[2:]
    numbers, metric, position = {}, None, 0
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip('|').split('|')]
        position = position + 1 if cells[0] in ('', metric) else 0
        metric = cells[0] or metric
        numbers[(metric, position)] = cells[2:]
    return numbers


def test_readme_demo_table_is_the_one_in_docs_demo():
    """The held-out demo numbers appear in README and docs/demo.md: the two tables agree."""
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        readme = demo_numbers(f.read(), '| metric | arm | seed 100 |')
    with open(osp.join(REPO, 'docs', 'demo.md'), encoding='utf-8') as f:
        demo = demo_numbers(f.read(), '| metric | arm | seed 100 | seed 101 |')
    assert len(readme) == 9 and readme == demo
