"""The one place that knows where each model family keeps its layers, attention and FFN.

Every method asks an adapter for modules instead of spelling out attribute paths, so adding a
model family means adding one adapter here and nothing in ``methods/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel


# Groups a config may name instead of single roles ("attention" = the four attention linears).
ROLE_GROUPS: dict[str, tuple[str, ...]] = {
    "attention": ("query", "key", "value", "output"),
    "ffn": ("ffn_in", "ffn_out"),
}


def expand_roles(selection: list[str] | tuple[str, ...]) -> list[str]:
    """Linear roles named by ``selection``: groups ("attention", "ffn") and single roles, in encoder order.

    Names that are neither (e.g. "classifier") are ignored here; callers handle them.

    Example:
        >>> expand_roles(["attention", "ffn_in"])
        ['query', 'key', 'value', 'output', 'ffn_in']
    """
    chosen = set(selection)
    order = [role for roles in ROLE_GROUPS.values() for role in roles]
    return [role for role in order
            if role in chosen or any(group in chosen and role in roles for group, roles in ROLE_GROUPS.items())]


@dataclass(frozen=True)
class ModelAdapter:
    """Module paths and config field names of one BERT-like model family.

    Paths are relative to the backbone (``model.base_model``) for ``layers`` and relative to one
    encoder layer for the rest.

    Example:
        >>> adapter = get_adapter(model)
        >>> q = adapter.attention_linears(adapter.layers(model)[0])["query"]
    """

    name: str
    model_types: tuple[str, ...]
    layers_path: str
    query: str
    key: str
    value: str
    attention_output: str
    attention_module: str
    ffn_in: str
    ffn_out: str
    config_num_layers: str
    config_num_heads: str
    config_hidden_size: str
    config_intermediate_size: str
    # Attributes of the attention module that cache the head count / total head width.
    attention_heads_attr: str | None = None
    attention_all_head_size_attr: str | None = None
    # Whether the forward takes token_type_ids (segment embeddings), e.g. for ONNX export inputs.
    token_type_ids: bool = False
    # onnxruntime.transformers.optimizer's model_type whose fusions fit this family (None: no fusions).
    onnx_fusion_type: str | None = "bert"
    # Position ids a family reserves below the first token (RoBERTa counts from padding_idx + 1).
    reserved_positions: int = 0
    # A per-head attention bias computed once for all layers (MPNet's relative positions): the argument of the
    # attention module that carries it, so a layer with fewer heads takes only its heads' part.
    shared_head_bias_arg: tuple[int, str] | None = None
    # Further per-head projections of a layer (DeBERTa's relative-position key/query projections when they are not
    # shared with key/query): they lose a removed head's rows like query, key and value. Absent ones are skipped.
    extra_head_projections: tuple[str, ...] = ()
    # q, k and v computed by one linear (ModernBERT's Wqkv): its rows are three blocks (q, k, v), each grouped by
    # head, so query, key and value name the same path and a head's rows are taken from every block.
    fused_qkv: bool = False
    # A gated FFN whose input linear holds the input and the gate halves (ModernBERT's Wi): a neuron is a row of
    # each half.
    gated_ffn: bool = False
    # An attribute each layer carries that the config lists per layer (ModernBERT's attention_type, listed in
    # layer_types): kept in step when layers are dropped.
    layer_type_attr: str | None = None
    config_layer_types: str | None = None
    # The first layer is built differently from the others (ModernBERT's has no attention LayerNorm), so a smaller
    # stack must keep layer 0, first.
    first_layer_differs: bool = False

    # --- modules -------------------------------------------------------------------------
    def layers(self, model: nn.Module) -> nn.ModuleList:
        """The encoder's list of layers."""
        return _backbone(model).get_submodule(self.layers_path)

    def set_layers(self, model: PreTrainedModel, layers: nn.Module, update_config: bool = True) -> None:
        """Replace the encoder layers; ``update_config`` keeps the config's layer count in step."""
        parent_path, _, attr = self.layers_path.rpartition(".")
        parent = _backbone(model).get_submodule(parent_path) if parent_path else _backbone(model)
        setattr(parent, attr, layers)
        if not update_config:
            return
        for config in _configs_of(model):
            setattr(config, self.config_num_layers, len(layers))
            if self.config_layer_types:
                setattr(config, self.config_layer_types, [getattr(layer, self.layer_type_attr) for layer in layers])

    def check_kept_layers(self, kept: list[int], how: str) -> None:
        """Refuse, before any change, a smaller stack the family cannot build: ``kept`` are the original layers
        in their new order; ``how`` names the setting that keeps layer 0 first."""
        if self.first_layer_differs and (not kept or kept[0] != 0 or 0 in kept[1:]):
            raise ValueError(f"{self.name}'s first layer is built differently from the others (no attention "
                             f"LayerNorm), so a smaller model must start with layer 0; these settings keep layers "
                             f"{kept}. Use {how}.")

    def attention_linears(self, layer: nn.Module) -> dict[str, nn.Linear]:
        """``{"query", "key", "value", "output"}`` linears of one layer's self-attention."""
        return {
            "query": layer.get_submodule(self.query),
            "key": layer.get_submodule(self.key),
            "value": layer.get_submodule(self.value),
            "output": layer.get_submodule(self.attention_output),
        }

    def head_projection_paths(self, layer: nn.Module) -> list[str]:
        """Paths (relative to ``layer``) of every linear whose output rows are grouped by head: query, key, value
        and the family's extra per-head projections that this layer has."""
        extra = [path for path in self.extra_head_projections if _has_submodule(layer, path)]
        return list(dict.fromkeys([self.query, self.key, self.value, *extra]))

    def head_rows(self, keep: list[int], num_heads: int, head_size: int) -> torch.Tensor:
        """Rows of a head projection (``head_projection_paths``) that belong to the heads in ``keep``."""
        rows = torch.cat([torch.arange(h * head_size, (h + 1) * head_size) for h in keep])
        if not self.fused_qkv:
            return rows
        return torch.cat([rows + block * num_heads * head_size for block in range(3)])

    def head_projection_width(self, num_heads: int, head_size: int) -> int:
        """Output width of a head projection with ``num_heads`` heads."""
        return (3 if self.fused_qkv else 1) * num_heads * head_size

    def ffn_in_width(self, neurons: int) -> int:
        """Output width of the FFN input linear with ``neurons`` neurons."""
        return (2 if self.gated_ffn else 1) * neurons

    def ffn_width(self, layer: nn.Module) -> int:
        """FFN neurons of one layer."""
        return self.ffn_linears(layer)["in"].out_features // self.ffn_in_width(1)

    def ffn_in_rows(self, keep: torch.Tensor, width: int) -> torch.Tensor:
        """Rows of the FFN input linear that belong to the neurons in ``keep`` (of ``width``)."""
        return torch.cat([keep, keep + width]) if self.gated_ffn else keep

    def ffn_linears(self, layer: nn.Module) -> dict[str, nn.Linear]:
        """``{"in", "out"}`` linears of one layer's feed-forward block."""
        return {"in": layer.get_submodule(self.ffn_in), "out": layer.get_submodule(self.ffn_out)}

    def replace_module(self, layer: nn.Module, path: str, new: nn.Module) -> None:
        """Swap the module at ``path`` (relative to ``layer``) for ``new``."""
        parent_path, _, attr = path.rpartition(".")
        parent = layer.get_submodule(parent_path) if parent_path else layer
        setattr(parent, attr, new)

    def linear_paths(self) -> dict[str, str]:
        """Role -> path of every encoder-layer linear: query, key, value, output, ffn_in, ffn_out."""
        return {
            "query": self.query,
            "key": self.key,
            "value": self.value,
            "output": self.attention_output,
            "ffn_in": self.ffn_in,
            "ffn_out": self.ffn_out,
        }

    def linear_names(self, model: nn.Module, roles: list[str]) -> list[str]:
        """Full module names of the encoder linears with the given roles (see ``linear_paths``), layer by layer.

        Linears already replaced by another module type (int8, low-rank) are left out.
        """
        return [name for name in self.role_module_names(model, roles) if isinstance(model.get_submodule(name), nn.Linear)]

    def role_module_names(self, model: nn.Module, roles: list[str]) -> list[str]:
        """Full names of the modules at the given roles' paths, whatever their type (Linear or a replacement)."""
        paths = self.linear_paths()
        unknown = [r for r in roles if r not in paths]
        if unknown:
            raise ValueError(f"Unknown linear roles {unknown}; roles: {list(paths)}.")
        names = {id(module): name for name, module in model.named_modules()}
        # dict.fromkeys: roles that share one module (fused q/k/v) name it once.
        return list(dict.fromkeys(names[id(layer.get_submodule(paths[role]))] for layer in self.layers(model)
                                  for role in roles))

    def pooler_linear_names(self, model: nn.Module) -> list[str]:
        """Full names of the backbone's pooler linears (empty when the family has no pooler)."""
        prefix = _backbone_prefix(model)
        return [name for name, module in model.named_modules()
                if isinstance(module, nn.Linear) and name.startswith(prefix + "pooler.")]

    def head_linear_names(self, model: nn.Module) -> list[str]:
        """Full names of the task head's linears: everything outside the backbone."""
        prefix = _backbone_prefix(model)
        return [name for name, module in model.named_modules()
                if isinstance(module, nn.Linear) and not name.startswith(prefix)]

    def input_names(self, config: PretrainedConfig) -> list[str]:
        """The tensors a sequence classifier of this family takes, in export order."""
        names = ["input_ids", "attention_mask"]
        if self.token_type_ids and getattr(config, "type_vocab_size", 0):
            names.append("token_type_ids")
        return names

    # --- shapes --------------------------------------------------------------------------
    def num_layers(self, config: PretrainedConfig) -> int:
        return int(getattr(config, self.config_num_layers))

    def max_positions(self, config: PretrainedConfig) -> int | None:
        """The longest sequence the position embeddings cover (None: the family has no such limit)."""
        if getattr(config, "position_biased_input", True) is False:  # relative positions only (DeBERTa-v3)
            return None
        positions = getattr(config, "max_position_embeddings", None)
        return None if positions is None else int(positions) - self.reserved_positions

    def check_length(self, config: PretrainedConfig, length: int) -> None:
        """A clear error before any work when inputs of ``length`` tokens would overrun the position embeddings."""
        limit = self.max_positions(config)
        if limit is not None and length > limit:
            raise ValueError(f"max_seq_length={length} is longer than this model's {limit} positions "
                             f"(max_position_embeddings in config.json); use max_seq_length <= {limit}.")

    def num_heads(self, config: PretrainedConfig) -> int:
        return int(getattr(config, self.config_num_heads))

    def hidden_size(self, config: PretrainedConfig) -> int:
        return int(getattr(config, self.config_hidden_size))

    def head_size(self, config: PretrainedConfig) -> int:
        return self.hidden_size(config) // self.num_heads(config)

    def intermediate_size(self, config: PretrainedConfig) -> int:
        return int(getattr(config, self.config_intermediate_size))

    def layer_num_heads(self, layer: nn.Module, config: PretrainedConfig) -> int:
        """Heads actually present in one layer (uneven after head pruning)."""
        return self.attention_linears(layer)["query"].out_features // self.head_projection_width(1, self.head_size(config))

    def set_layer_num_heads(self, layer: nn.Module, num_heads: int, config: PretrainedConfig,
                            kept: list[int] | None = None) -> None:
        """Keep the attention module's cached head count in step with its (resized) linears.

        The forward passes of the supported families infer the head count from the tensor
        shape, but other code (and users) read these attributes. ``kept``: which of the current heads stay
        (a family with a shared per-head bias slices it to them).
        """
        attention = layer.get_submodule(self.attention_module)
        if self.shared_head_bias_arg is not None:
            set_kept_bias_heads(attention, list(range(num_heads)) if kept is None else list(kept),
                                self.shared_head_bias_arg)
        if self.attention_heads_attr:
            setattr(attention, self.attention_heads_attr, num_heads)
        if self.attention_all_head_size_attr:
            setattr(attention, self.attention_all_head_size_attr, num_heads * self.head_size(config))


def set_kept_bias_heads(attention: nn.Module, kept: list[int], bias_arg: tuple[int, str]) -> None:
    """Record which of the shared bias's heads this attention module keeps (indices into its current heads,
    composed with any earlier removal), and slice the bias on the way in."""
    current = getattr(attention, "hfcompress_bias_heads", None)
    # A plain list, not a buffer: the record rebuilds it, and a buffer made on the meta skeleton at load time
    # would not be filled by the checkpoint.
    attention.hfcompress_bias_heads = [int(current[k]) for k in kept] if current is not None else list(kept)
    attention.hfcompress_bias_index = {}  # device -> index tensor, built once per device on the first forward
    attention.hfcompress_bias_arg = bias_arg
    if not getattr(attention, "hfcompress_bias_hooked", False):
        attention.register_forward_pre_hook(_slice_shared_bias, with_kwargs=True)
        attention.hfcompress_bias_hooked = True


def _slice_shared_bias(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    kept = module.hfcompress_bias_heads
    position, name = module.hfcompress_bias_arg

    def select(bias: torch.Tensor) -> torch.Tensor:
        if bias.shape[1] == len(kept):  # nothing removed since the bias was made
            return bias
        cache = module.hfcompress_bias_index
        if bias.device not in cache:
            cache[bias.device] = torch.tensor(kept, device=bias.device)
        return bias.index_select(1, cache[bias.device])

    if kwargs.get(name) is not None:
        kwargs = {**kwargs, name: select(kwargs[name])}
    elif len(args) > position and args[position] is not None:
        args = (*args[:position], select(args[position]), *args[position + 1:])
    return args, kwargs


def _has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "base_model", model)


def _backbone_prefix(model: nn.Module) -> str:
    backbone = _backbone(model)
    if backbone is model:
        return ""
    return next(name for name, module in model.named_modules() if module is backbone) + "."


def _configs_of(model: nn.Module) -> list[PretrainedConfig]:
    configs = []
    for module in (model, _backbone(model)):
        config = getattr(module, "config", None)
        if config is not None and all(config is not c for c in configs):
            configs.append(config)
    return configs


_REGISTRY: dict[str, ModelAdapter] = {}
# Families users ask for that need more than a module map, and why.
NOT_YET: dict[str, str] = {}


def register_adapter(adapter: ModelAdapter) -> ModelAdapter:
    """Make ``adapter`` the one used for each of its ``model_types``."""
    for model_type in adapter.model_types:
        _REGISTRY[model_type] = adapter
    return adapter


def supported_model_types() -> list[str]:
    return sorted(_REGISTRY)


def check_sequence_length(config: PretrainedConfig, length: int) -> None:
    """Refuse, before any work, inputs longer than the model's position embeddings (families without an
    adapter are left to the model).

    Example:
        >>> check_sequence_length(AutoConfig.from_pretrained("bert-base-uncased"), 1024)
        Traceback (most recent call last):
        ValueError: max_seq_length=1024 is longer than this model's 512 positions ...
    """
    if getattr(config, "model_type", None) in _REGISTRY:
        get_adapter(config).check_length(config, length)


def get_adapter(model_or_config: nn.Module | PretrainedConfig | str) -> ModelAdapter:
    """The adapter for a model, its config, or a ``model_type`` string.

    Example:
        >>> get_adapter("bert").query
        'attention.self.query'
    """
    if isinstance(model_or_config, str):
        model_type = model_or_config
    else:
        config = model_or_config if isinstance(model_or_config, PretrainedConfig) else getattr(model_or_config, "config", None)
        model_type = getattr(config, "model_type", None)
    if model_type not in _REGISTRY:
        reason = NOT_YET.get(model_type, "")
        raise ValueError(
            f"hfcompress does not support model_type={model_type!r}{reason}. Supported model types: "
            f"{', '.join(supported_model_types())}. Use one of those architectures, or register a "
            "ModelAdapter for yours with hfcompress.adapters.register_adapter."
        )
    return _REGISTRY[model_type]
