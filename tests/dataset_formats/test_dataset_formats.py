"""r1lab.dataset_formats: every public format recognised from its columns, read from every kind of
upload, mapped to the rows the trainers and curation read, with its gold answer; bad rows and
hostile archives refused with a reason. Plain Python: no database."""
import io
import json
import tarfile
import zipfile

import pytest

from r1lab.dataset_formats import FileError, Mapping, RowError, detect, gold_answer, open_table, prompt_row, read_rows
from r1lab.dataset_formats.mapping import cold_start_fields
from tests.dataset_formats import fixtures as F
from training_backend.rewards.sandbox import run_sandboxed


def _prompts(rows, kind="math", upload="jsonl", mapping=None):
    filename, data = F.encode(rows, upload)
    return read_rows(data, kind=F_KIND[upload], target="prompts", mapping=mapping,
                     convert=lambda raw, n, m, text: prompt_row(raw, mapping=m, number=n, kind=kind, text_cells=text))


F_KIND = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "zip": "arrow", "tar.gz": "arrow"}


@pytest.mark.parametrize("rows, expected", [
    (F.GSM8K, Mapping(format="gsm8k", prompt="question", reasoning="answer", answer="answer", answer_rule="hash_tail")),
    (F.MATH, Mapping(format="math", prompt="problem", reasoning="solution", answer="solution", answer_rule="boxed")),
    (F.MATH500, Mapping(format="math", prompt="problem", reasoning="solution", answer="answer", answer_rule="as_is", id="unique_id")),
    (F.DEEPSCALER, Mapping(format="problem_answer", prompt="problem", reasoning="solution", answer="answer")),
    (F.NUMINA, Mapping(format="problem_answer", prompt="problem", reasoning="solution", answer="solution", answer_rule="boxed")),
    (F.OPENR1, Mapping(format="generations", prompt="problem", generations="generations", correct="correctness_math_verify",
                       answer="answer", id="uuid")),
    (F.CHAT, Mapping(format="chat", messages="messages", answer_rule="auto")),
    (F.SHAREGPT, Mapping(format="chat", messages="conversations", answer_rule="auto")),
    (F.APPS, Mapping(format="apps", prompt="question", tests="input_output", id="problem_id")),
    (F.MBPP, Mapping(format="mbpp", prompt="text", tests="test_list", tests_setup="test_setup_code", id="task_id")),
    ([{"prompt": "1+1", "answer": "2", "type": "math"}], Mapping(format="native", prompt="prompt", answer="answer")),
    ([{"question": "q", "reasoning": "r", "lang": "en"}], Mapping(format="native", prompt="question", reasoning="reasoning")),
])
def test_each_format_is_detected_from_its_columns(rows, expected):
    columns = list(dict.fromkeys(k for r in rows for k in r))
    assert detect(columns, rows) == expected


def test_deepcoder_tests_column_of_input_output_json_is_a_code_set():
    rows = [{"problem": "add", "tests": json.dumps({"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}), "metadata": "{}"}]
    assert detect(["problem", "tests", "metadata"], rows) == Mapping(format="apps", prompt="problem", tests="tests")


@pytest.mark.parametrize("upload", F.KINDS)
def test_every_kind_of_upload_reads_the_same_rows(upload):
    result = _prompts(F.GSM8K, upload=upload)
    assert result.ok, result.errors
    assert [(r["prompt"], r["answer"]) for r in result.rows] == [(g["question"], a) for g, a in zip(F.GSM8K, ["72", "22", "210"])]
    assert result.unit == ("line" if upload in ("jsonl", "csv") else "row")
    assert result.mapping.format == "gsm8k" and result.ignored_columns == []


def test_gold_answer_rules():
    assert gold_answer("Some work.\n#### 1,000 ", rule="hash_tail", column="answer") == "1,000"
    assert gold_answer("a #### 3 #### 4", rule="hash_tail", column="answer") == "4"  # the last ####
    solution = "First $\\boxed{1}$, then $\\boxed{\\frac{a}{\\sqrt{b}}}$ and a stray \\boxed{unclosed"
    assert gold_answer(solution, rule="boxed", column="solution") == "\\frac{a}{\\sqrt{b}}"  # last balanced box
    assert gold_answer("so \\fbox{x^{2}}", rule="boxed", column="solution") == "x^{2}"
    assert gold_answer(72, rule="as_is", column="answer") == "72"
    assert gold_answer("n #### 5", rule="auto", column="a") == "5"
    assert gold_answer("is $\\boxed{6}$", rule="auto", column="a") == "6"
    assert gold_answer(" 7 ", rule="auto", column="a") == "7"
    assert gold_answer(None, rule="boxed", column="a") == ""
    with pytest.raises(RowError, match="no `#### answer`"):
        gold_answer("no tail here", rule="hash_tail", column="answer")
    with pytest.raises(RowError, match="balanced braces"):
        gold_answer("\\boxed{never closed", rule="boxed", column="solution")
    with pytest.raises(RowError, match="must be text"):
        gold_answer(["7"], rule="as_is", column="answer")


def test_math_gold_is_the_last_box_of_the_solution_and_its_type_is_not_the_row_type():
    result = _prompts(F.MATH, upload="parquet")
    assert [r["answer"] for r in result.rows] == ["\\frac{1}{2}", "4", "5\\sqrt{2}"]
    assert {r["type"] for r in result.rows} == {"math"}  # not "Algebra"
    assert result.ignored_columns == ["level", "type"]


def test_open_r1_imports_the_first_generation_flagged_correct():
    m = detect(list(F.OPENR1[0]), F.OPENR1)
    fields = cold_start_fields(F.OPENR1[0], mapping=m, text_cells=False)
    assert fields["completion"] == F.OPENR1[0]["generations"][1] and fields["gold_answer"] == "15"
    assert "source" not in fields  # Open-R1's source ("olympiads") is not r1lab's
    none_correct = dict(F.OPENR1[0], correctness_math_verify=[False, False])
    with pytest.raises(RowError, match="no generation is marked correct in `correctness_math_verify`"):
        cold_start_fields(none_correct, mapping=m, text_cells=False)
    misaligned = dict(F.OPENR1[0], correctness_math_verify=[True])
    with pytest.raises(RowError, match="2 true/false flags"):
        cold_start_fields(misaligned, mapping=m, text_cells=False)


def test_code_tests_from_apps_input_output_pass_the_reference_solution_in_the_sandbox():
    result = _prompts(F.APPS, kind="code", upload="parquet")
    assert result.ok, result.errors
    for row in result.rows:
        good = run_sandboxed(F.APPS_SOLUTIONS[row["id"]], row["tests"], allow_unsandboxed=True)
        assert (good.passed, good.total) == (len(row["tests"]), len(row["tests"]))
        wrong = run_sandboxed("def add(a, b):\n    return a - b\nclass Solution:\n    def minMax(self, xs):\n        return 0, 0\n",
                              row["tests"], allow_unsandboxed=True)
        assert wrong.passed == 0


def test_stdin_only_code_rows_are_row_errors_naming_why():
    result = _prompts([*F.APPS, F.APPS_STDIN], kind="code", upload="jsonl")
    assert [e["line"] for e in result.errors] == [3]
    assert "cannot feed stdin" in result.errors[0]["message"]


def test_mbpp_test_setup_code_runs_before_each_test():
    result = _prompts(F.MBPP, kind="code", upload="csv")
    assert result.rows[1]["tests"] == ["import math\nassert root(2) == 1.41", "import math\nassert root(9) == 3.0"]
    for row, source in zip(result.rows, F.MBPP):
        run = run_sandboxed(source["code"], row["tests"], allow_unsandboxed=True)
        assert run.passed == run.total == 2


def test_rows_that_cannot_be_mapped_are_errors_with_their_row_number():
    rows = [F.GSM8K[0], {"question": "no tail", "answer": "just text"}, F.GSM8K[1], {"question": "", "answer": "#### 1"}]
    result = _prompts(rows, upload="parquet")
    assert not result.ok
    assert [(e["line"], e["message"]) for e in result.errors] == [
        (2, "`answer` has no `#### answer` at its end"), (4, "`question` must be a non-empty string")]


def test_a_mapping_naming_a_column_the_file_lacks_reads_nothing():
    result = _prompts(F.GSM8K, mapping=Mapping(format="gsm8k", prompt="question", answer="gold", answer_rule="hash_tail"))
    assert result.rows == [] and result.errors == [{"line": None, "message": "mapping, answer: the file has no column 'gold'"}]


def test_a_datasetdict_folder_reads_train_unless_another_split_is_asked_for():
    data = F.save_to_disk_archive({"train": F.GSM8K[:2], "test": F.GSM8K[2:]}, kind="tar.gz")
    with open_table(data, kind="arrow") as table:
        assert (table.splits, table.split, table.num_rows) == (["train", "test"], "train", 2)
    with open_table(data, kind="arrow", split="test") as table:
        assert [raw["answer"][-3:] for _, raw in table.rows()] == ["210"]
    with pytest.raises(FileError, match="no split 'validation'"):
        with open_table(data, kind="arrow", split="validation"):
            pass


def _zip(entries: dict[str, bytes], *, symlink: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _tar(name: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@pytest.mark.parametrize("data, message", [
    (_zip({"../evil/state.json": b"{}"}), "outside its folder"),
    (_zip({"ds/state.json": b"{}"}, symlink="ds/data.arrow"), "not a plain file"),
    (_tar("../state.json", b"{}"), "cannot be unpacked"),
    (_zip({"notes.txt": b"hello"}), "no datasets save_to_disk folder"),
    (b"not an archive at all", "not a .zip or .tar"),
])
def test_hostile_or_wrong_archives_are_refused_with_a_reason(data, message, tmp_path):
    with pytest.raises(FileError, match=message):
        with open_table(data, kind="arrow"):
            pass


def test_an_archive_that_unpacks_too_large_is_refused_before_it_is_written():
    data = _zip({"ds/state.json": b"{}", "ds/big.arrow": b"\0" * 10_000})
    with pytest.raises(FileError, match="unpacks to 10,002 bytes"):
        with open_table(data, kind="arrow", max_unpacked_bytes=5_000):
            pass


@pytest.mark.parametrize("data, kind, message", [
    (b"\xff\xfe bad", "jsonl", "not UTF-8"),
    (b"PAR1 this is not parquet", "parquet", "not a readable Parquet file"),
])
def test_unreadable_files_are_one_clear_error(data, kind, message):
    result = read_rows(data, kind=kind, target="prompts", convert=lambda *a: None)
    assert result.error_count == 1 and message in result.errors[0]["message"] and result.errors[0]["line"] == 0
