"""What a model folder is, read the way the trainer will load it: `python -m training_backend
inspect-model PATH` prints one `stage.model_check_line` (info, or the reason it is refused).

The web process never imports torch (nor transformers, which pulls it), so it runs this command
in a subprocess (r1lab.pipelines.model_check) and stores the info on BaseModel.

What "loadable" means here is what the trainer needs, checked with transformers itself:
- config.json parses and transformers knows its architecture (`AutoConfig`, no remote code);
- the architecture has a causal-LM class and the weights cover it: the checkpoint's tensors, as
  empty meta tensors of their shapes and dtypes (safetensors headers; nothing is read, so a 70B
  folder takes as long as a tiny one), go through that class's `from_pretrained` on the meta
  device, whose report must show no missing and no wrongly shaped tensor;
- the tokenizer loads (`AutoTokenizer`, no remote code; the project's own `CharTokenizer` by its
  class name) and has no id beyond the embedding;
- a chat template, when there is one, renders a user turn with `add_generation_prompt=True`.

Everything in the folder is untrusted: nothing runs remote code (`trust_remote_code=False`), the
chat template is rendered by transformers' `apply_chat_template`, which compiles it in a
`jinja2.sandbox.ImmutableSandboxedEnvironment` (no attribute access to internals, no mutation of
what is passed in), under an address-space limit (a template that builds a huge string fails
with MemoryError instead of eating the host), and the caller kills this process after a timeout
(a template that loops for ever). Strings that end up in the info are cut to a bounded length;
the page escapes them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

from training_backend.stage import Info

# The R1-Zero template as DeepSeek-R1's report writes it, and the example problem both previews wrap.
R1_ZERO_PREVIEW = "User: {prompt} Assistant: <think>"
PREVIEW_PROMPT = "47+85"
R1_TAGS = ("<think>", "</think>", "<answer>", "</answer>")

MAX_TEXT = 4_000  # chars of a preview kept in the info
MAX_TEMPLATE = 20_000  # chars of a chat template's source kept
MAX_REASON = 600  # chars of a library's error message kept in a refusal
MAX_HEADER_BYTES = 100_000_000  # safetensors refuses larger headers too
RENDER_HEADROOM_BYTES = 2 << 30  # address space the template may add while it renders

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "merges.txt")
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
GENERATION_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "do_sample", "temperature", "top_p", "top_k",
                     "max_new_tokens", "max_length", "repetition_penalty")

# safetensors dtype names → torch's
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


class FolderRefused(ValueError):
    """The folder cannot be used as a base model; the message says why, for a person."""


def _short(text: object, limit: int = MAX_REASON) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _why(exc: BaseException) -> str:
    return _short(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _json_safe(value: object) -> object:
    """A value from an untrusted JSON file, fit to store and show: bounded, finite (PostgreSQL's
    jsonb has no NaN), else its text."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return value[:16]
    return _short(value, 100)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FolderRefused(f"{what} is not readable JSON ({_why(exc)})") from None
    if not isinstance(data, dict):
        raise FolderRefused(f"{what} is not a JSON object")
    return data


# --- weights: dtypes and shapes from the safetensors headers (JSON after an 8-byte length) -------

def safetensors_header(path: Path) -> dict[str, dict]:
    """{tensor name: {"dtype", "shape", …}} without reading a tensor."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n <= 0 or n > MAX_HEADER_BYTES:
                raise FolderRefused(f"{path.name} is not a safetensors file (header length {n})")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FolderRefused(f"{path.name} is not a safetensors file ({_why(exc)})") from None
    if not isinstance(header, dict):
        raise FolderRefused(f"{path.name} is not a safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    return header


def _shards(folder: Path, index_name: str) -> list[Path]:
    """The shard files a sharded checkpoint's index names (an index is untrusted: its shards must be
    plain files in this folder)."""
    index = folder / index_name
    weight_map = _read_json(index, index_name).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise FolderRefused(f"{index_name} has no weight_map")
    shards = sorted({str(v) for v in weight_map.values()})
    for name in shards:
        if Path(name).name != name or name in (".", ".."):
            raise FolderRefused(f"{index_name} names a shard outside the folder: {_short(name, 200)!r}")
        if not (folder / name).is_file():
            raise FolderRefused(f"missing weights: shard {name} listed in {index_name} is not in the folder")
    return [folder / name for name in shards]


def checkpoint_files(folder: Path) -> list[Path]:
    """The weight files transformers would read, safetensors first (its own order of preference)."""
    for index, single in (("model.safetensors.index.json", "model.safetensors"),
                          ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        if (folder / index).is_file():
            return _shards(folder, index)
        if (folder / single).is_file():
            return [folder / single]
    return []


def meta_state_dict(files: list[Path]) -> dict:
    """{tensor name: an empty tensor of its shape and dtype on the meta device}: the checkpoint as
    transformers' loader sees it, without reading a weight (safetensors: the JSON header;
    pytorch_model.bin: torch.load onto the meta device, mmap'ed, weights only)."""
    import torch

    out: dict = {}
    for path in files:
        if path.suffix == ".safetensors":
            for name, t in safetensors_header(path).items():
                if not isinstance(t, dict) or not isinstance(t.get("shape"), list):
                    raise FolderRefused(f"{path.name}: tensor {_short(name, 200)!r} has no shape")
                dtype = getattr(torch, SAFETENSORS_DTYPES.get(str(t.get("dtype")), ""), None)
                if not isinstance(dtype, torch.dtype):
                    raise FolderRefused(f"{path.name}: tensor {_short(name, 200)!r} has an unknown dtype "
                                        f"{_short(t.get('dtype'), 20)!r}")
                out[name] = torch.empty([int(d) for d in t["shape"]], dtype=dtype, device="meta")
        else:
            try:
                loaded = torch.load(path, map_location="meta", weights_only=True, mmap=True)
            except Exception as exc:  # noqa: BLE001 (an untrusted pickle: any failure is a refusal)
                raise FolderRefused(f"{path.name} does not load as weights only ({_why(exc)})") from None
            if not isinstance(loaded, dict):
                raise FolderRefused(f"{path.name} is not a state dict")
            out.update({k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)})
    return out


def weight_dtypes(state_dict: dict) -> dict[str, int]:
    """{dtype: number of parameters stored in it}."""
    counts: dict[str, int] = {}
    for t in state_dict.values():
        name = str(t.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + t.numel()
    return counts


# --- the chat template, rendered under an address-space limit ----------------------------------

@contextlib.contextmanager
def address_space_limit(extra_bytes: int):
    """RLIMIT_AS at the current size + extra_bytes while the block runs (Linux; elsewhere no limit)."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
        vm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:")))
    except (ImportError, OSError, StopIteration, ValueError):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_kb * 1024 + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def render_chat_preview(tok, prompt: str) -> str:
    """A user turn through the tokenizer's chat template, ready for the assistant to answer.
    transformers compiles the template in an ImmutableSandboxedEnvironment (chat_template_utils)."""
    with address_space_limit(RENDER_HEADROOM_BYTES):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
    if not isinstance(text, str):
        raise FolderRefused(f"the chat template rendered a {type(text).__name__}, not text")
    return text


# --- the whole check -------------------------------------------------------------------------------

def _count_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def quiet_transformers() -> None:
    """For the CLI process: offline, no progress bars, only errors (the check line is the output)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder; never reach for a hub
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def inspect_folder(path: str | os.PathLike) -> dict:
    """The info (stage.Info keys) of a folder the trainer can load, or FolderRefused with why not.

    Library errors while loading an untrusted folder come in every type (ValueError, OSError,
    KeyError, the tokenizers' Exception, jinja's TemplateError…): each is a refusal with its message,
    which is why the three loading steps below catch Exception."""
    folder = Path(path)
    if not folder.is_dir():
        raise FolderRefused(f"{str(path)!r} is not a folder")
    if not (folder / "config.json").is_file():
        raise FolderRefused("no config.json: not a Hugging Face model folder")
    raw_config = _read_json(folder / "config.json", "config.json")
    if "auto_map" in raw_config:
        raise FolderRefused("config.json asks for custom code (auto_map); r1lab never runs a folder's own code")
    files = checkpoint_files(folder)
    if not files:
        raise FolderRefused("missing weights: no model.safetensors (nor a sharded index, nor pytorch_model.bin)")
    if not any((folder / n).is_file() for n in TOKENIZER_FILES):
        raise FolderRefused("no tokenizer: none of " + ", ".join(TOKENIZER_FILES))
    if (folder / "tokenizer_config.json").is_file():  # unreadable JSON is its own refusal
        _read_json(folder / "tokenizer_config.json", "tokenizer_config.json")

    import transformers
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from training_backend.models import load_tokenizer

    version = transformers.__version__
    state_dict = meta_state_dict(files)
    weights = weight_dtypes(state_dict)
    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 (see the docstring)
        raise FolderRefused(f"transformers {version} cannot read config.json: {_why(exc)}") from None
    try:
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise FolderRefused(f"not a causal language model: transformers {version} has no causal-LM class for "
                            f"{type(config).__name__} (model_type {_short(config.model_type, 100)!r})") from None
    try:
        # The checkpoint's meta tensors through transformers' own loader (key renaming, tied
        # weights, shape checks): the missing / mismatched report a real load would give.
        model, loading = model_class.from_pretrained(
            None, config=config, state_dict=state_dict, device_map="meta", output_loading_info=True,
            ignore_mismatched_sizes=True, use_kernels=False, trust_remote_code=False)  # mismatches: reported below
    except Exception as exc:  # noqa: BLE001
        raise FolderRefused(f"transformers {version} cannot load the weights into {model_class.__name__}: "
                            f"{_why(exc)}") from None
    missing, mismatched = sorted(loading.get("missing_keys") or ()), list(loading.get("mismatched_keys") or ())
    if missing:
        raise FolderRefused(f"missing weights: {len(missing)} tensor(s) of {type(model).__name__} are not in the "
                            f"checkpoint ({_short(', '.join(missing[:5]), 300)}{'…' if len(missing) > 5 else ''})")
    if mismatched:  # (name, checkpoint shape, model shape)
        first = mismatched[0]
        what = (f"{first[0]}: {tuple(first[1])} in the checkpoint, {tuple(first[2])} in the model"
                if isinstance(first, (tuple, list)) and len(first) == 3 else str(first))
        raise FolderRefused(f"weights of the wrong shape: {len(mismatched)} tensor(s), e.g. {_short(what, 300)}")
    try:
        tok = load_tokenizer(folder)  # exactly as the trainer loads it (training_backend.models)
    except Exception as exc:  # noqa: BLE001
        raise FolderRefused(f"the tokenizer does not load: {_why(exc)}") from None

    text_config = _text_config(config)
    vocab_size = getattr(text_config, "vocab_size", None)
    if isinstance(vocab_size, int) and len(tok) > vocab_size:
        raise FolderRefused(f"the tokenizer has {len(tok)} tokens but the model's embedding has {vocab_size} rows: "
                            "ids past the embedding would crash training")
    context = next((getattr(text_config, f) for f in CONTEXT_FIELDS if isinstance(getattr(text_config, f, None), int)),
                   None)

    template = getattr(tok, "chat_template", None)
    if isinstance(template, dict):  # named templates: apply_chat_template uses "default"
        template = template.get("default") or next(iter(template.values()), None)
    chat = None
    if template:
        try:
            chat = render_chat_preview(tok, PREVIEW_PROMPT)
        except Exception as exc:  # noqa: BLE001
            raise FolderRefused(f"the chat template does not render a user turn: {_why(exc)}") from None
    raw = R1_ZERO_PREVIEW.format(prompt=PREVIEW_PROMPT)

    generation = {}
    if (folder / "generation_config.json").is_file():
        gen = _read_json(folder / "generation_config.json", "generation_config.json")
        generation = {k: _json_safe(gen[k]) for k in GENERATION_FIELDS if k in gen}
    warnings = []
    unexpected = sorted(loading.get("unexpected_keys") or ())
    if unexpected:
        warnings.append(f"{len(unexpected)} tensor(s) in the checkpoint that {type(model).__name__} does not use "
                        f"({_short(', '.join(unexpected[:3]), 200)})")
    if isinstance(template, str) and len(template) > MAX_TEMPLATE:
        warnings.append(f"the chat template is {len(template)} characters; the first {MAX_TEMPLATE} are kept here")
    prompt_template = None
    if (folder / "r1lab_template.txt").is_file():
        prompt_template = _short((folder / "r1lab_template.txt").read_text(errors="replace").strip("\n"), 500)
    dtype = max(weights, key=weights.get) if weights else str(next(model.parameters()).dtype).removeprefix("torch.")

    return {
        Info.ARCHITECTURE: type(model).__name__,
        Info.MODEL_TYPE: _short(getattr(config, "model_type", ""), 100),
        Info.PARAMETERS: int(model.num_parameters()),
        Info.DTYPE: dtype,
        Info.WEIGHT_DTYPES: weights,
        Info.CONTEXT_LENGTH: context,
        Info.VOCAB_SIZE: vocab_size,
        Info.TOKENIZER_CLASS: type(tok).__name__,
        Info.TOKENIZER_SIZE: len(tok),
        Info.SPECIAL_TOKENS: {k: _short(getattr(tok, k), 100) for k in ("bos_token", "eos_token", "pad_token")
                              if getattr(tok, k, None)},
        Info.CHAT_TEMPLATE: template[:MAX_TEMPLATE] if isinstance(template, str) else None,
        Info.PREVIEW_PROMPT: PREVIEW_PROMPT,
        Info.PREVIEW_RAW: raw,
        Info.PREVIEW_RAW_TOKENS: _count_tokens(tok, raw),
        Info.PREVIEW_CHAT: chat[:MAX_TEXT] if chat is not None else None,
        Info.PREVIEW_CHAT_TOKENS: _count_tokens(tok, chat) if chat is not None else None,
        Info.TAG_TOKENS: {t: _count_tokens(tok, t) for t in R1_TAGS},
        Info.GENERATION: generation,
        Info.PROMPT_TEMPLATE: prompt_template,
        Info.WARNINGS: warnings,
        Info.TRANSFORMERS_VERSION: version,
    }
