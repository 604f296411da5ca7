"""The ONNX scorer: the exact LightGCN fold-in, the dot product, the seen mask and top-K.

Built with ``onnx.helper`` from the numpy fold-in tables rather than traced
from torch: the graph is a dozen standard operators, so building it directly
is deterministic, fast and independent of the exporter's version.

Scorer inputs (``B`` users, ``L`` history slots, ``E`` exclusion slots):
- ``e0`` float32 ``[B, d]``: the user's layer-0 embedding (id + features);
- ``hist_idx`` int64 ``[B, L]``, ``hist_w`` float32 ``[B, L]``: history items and
  edge weights, padded with weight 0 (any valid index);
- ``excl_idx`` int64 ``[B, E]``: item indices to mask, padded with ``I`` (a dummy
  column, always masked: the graph appends one ``I`` slot per row itself);
- ``k`` int64 ``[1]``.

Outputs: ``scores`` ``[B, k]``, ``indices`` ``[B, k]`` (masked items score -inf),
``user_emb`` ``[B, d]``, and the explanation of each recommended item ``j`` from the
contributions of the history slots to its score, ``c_lj = coef_l * <S_l, final_j> / (K + 1)``
(the score is ``<e0, final_j> / (K + 1) + sum_l c_lj``; all meaningless without history):

- ``because_slot`` ``[B, k]``: the slot with the largest contribution (what servers before
  the two-contribution explanations read; kept so they can still load new bundles);
- ``because_top`` int64 and ``because_contrib`` float32, ``[B, min(2, L), k]``: the two
  largest contributions per item and their slots (-inf for padding slots), largest first;
- ``history_pos`` ``[B, k]``: the sum of the positive contributions per item (what the
  history adds to the score), so a server can say what share the named item carries.

The fold-in (sym normalisation)::

    e_u = (e0_u + sum_i w_ui / sqrt(d_u d_i) * S_i) / (K + 1),  d_u = sum_i w_ui

With an item-item term (:mod:`recsys.item_item`, ``[I, M]`` entries per item), the score adds
``sum_l w_l * value[i_l, m]`` at item ``index[i_l, m]`` for every history slot ``l``: the
entries are gathered per slot and added into the scores (``ScatterElements``, reduction add)
before the mask and the top-K. The slot contributions stay those of the embedding part (the
term is not attributed per slot); ``history_pos`` adds the term's positive total per item, as
it too is what the history adds, so a share of it is a lower bound for the named item.

The feature projection for new users is a second, tiny model ``x [B, F] -> e0 [B, d]``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from recsys.item_item import ItemItemTerm

OPSET = 18
IR_VERSION = 9
NEG = float("-inf")


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name=name)


def build_scorer(
    item_S: np.ndarray,
    item_final: np.ndarray,
    item_inv_sqrt_deg: np.ndarray,
    num_layers: int,
    item_item: ItemItemTerm | None = None,
) -> onnx.ModelProto:
    """The scorer model with the item tables (and the item-item term) as initialisers."""
    n_items, dim = item_final.shape
    if item_S.shape != (n_items, dim) or item_inv_sqrt_deg.shape != (n_items,):
        raise ValueError(
            f"table shapes disagree: S {item_S.shape}, final {item_final.shape}, "
            f"deg {item_inv_sqrt_deg.shape}"
        )
    if item_item is not None and item_item.n_items != n_items:
        raise ValueError(f"item-item term for {item_item.n_items} items, the tables {n_items}")
    # one zero column after the real items absorbs the exclusion padding
    final_t = np.zeros((dim, n_items + 1), dtype=np.float32)
    final_t[:, :n_items] = item_final.T
    inits = [
        _const("item_S", np.ascontiguousarray(item_S, dtype=np.float32)),
        _const("item_final_t", final_t),
        _const("item_inv_sqrt_deg", np.ascontiguousarray(item_inv_sqrt_deg, dtype=np.float32)),
        _const("inv_k1", np.array(1.0 / (num_layers + 1), dtype=np.float32)),
        _const("eps", np.array(1e-12, dtype=np.float32)),
        _const("neg", np.array(NEG, dtype=np.float32)),
        _const("ax1", np.array([1], dtype=np.int64)),
        _const("ax2", np.array([2], dtype=np.int64)),
        _const("zero_f", np.array(0.0, dtype=np.float32)),
        _const("zero1", np.array([0], dtype=np.int64)),
        _const("one1", np.array([1], dtype=np.int64)),
        _const("two1", np.array([2], dtype=np.int64)),
        _const("n_items", np.array([n_items], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["hist_w", "ax1"], ["d_u"], keepdims=1),
        helper.make_node("Max", ["d_u", "eps"], ["d_u_pos"]),
        helper.make_node("Sqrt", ["d_u_pos"], ["sqrt_d_u"]),
        helper.make_node("Gather", ["item_inv_sqrt_deg", "hist_idx"], ["inv_sqrt_d_i"], axis=0),
        helper.make_node("Mul", ["hist_w", "inv_sqrt_d_i"], ["w_di"]),
        helper.make_node("Div", ["w_di", "sqrt_d_u"], ["coef"]),
        helper.make_node("Unsqueeze", ["coef", "ax1"], ["coef3"]),
        helper.make_node("Gather", ["item_S", "hist_idx"], ["S_h"], axis=0),
        helper.make_node("MatMul", ["coef3", "S_h"], ["agg3"]),
        helper.make_node("Squeeze", ["agg3", "ax1"], ["agg"]),
        helper.make_node("Add", ["e0", "agg"], ["e_sum"]),
        helper.make_node("Mul", ["e_sum", "inv_k1"], ["user_emb"]),
        *_item_item_nodes(item_item, inits, "scores_all"),
        # the dummy column is always masked (one extra exclusion slot per row), so TopK can
        # run on the masked scores in place instead of on a sliced copy: with k <= I and
        # ties broken towards the lower index, the -inf dummy column is never returned
        helper.make_node("Shape", ["excl_idx"], ["excl_shape0"]),
        helper.make_node("Gather", ["excl_shape0", "zero1"], ["b_dim"], axis=0),
        helper.make_node("Concat", ["b_dim", "one1"], ["pad_shape"], axis=0),
        helper.make_node("Expand", ["n_items", "pad_shape"], ["pad_col"]),
        helper.make_node("Concat", ["excl_idx", "pad_col"], ["excl_all"], axis=1),
        helper.make_node("Shape", ["excl_all"], ["excl_shape"]),
        helper.make_node("Expand", ["neg", "excl_shape"], ["neg_upd"]),
        helper.make_node(
            "ScatterElements", ["scores_all", "excl_all", "neg_upd"], ["scores_masked"], axis=1
        ),
        helper.make_node(
            "TopK", ["scores_masked", "k"], ["scores", "indices"], axis=1, largest=1, sorted=1
        ),
        # explanation: per top item, the history slot whose fold-in term adds most to its score.
        # The top items' rows are gathered from a row-major copy of the table (a Transpose of an
        # initialiser, folded once when the session is created): gathering columns of
        # item_final_t cost more than the whole scoring matmul at batch 16 (profiled)
        helper.make_node("Transpose", ["item_final_t"], ["item_final_rows"], perm=[1, 0]),
        helper.make_node("Gather", ["item_final_rows", "indices"], ["top_bkd"], axis=0),
        helper.make_node("Transpose", ["top_bkd"], ["top_bdk"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["S_h", "top_bdk"], ["s_dot"]),
        helper.make_node("Unsqueeze", ["coef", "ax2"], ["coef_l1"]),
        helper.make_node("Mul", ["s_dot", "coef_l1"], ["contrib"]),
        helper.make_node("Greater", ["hist_w", "zero_f"], ["real_slot"]),
        helper.make_node("Unsqueeze", ["real_slot", "ax2"], ["real_slot3"]),
        helper.make_node("Where", ["real_slot3", "contrib", "neg"], ["contrib_real"]),
        helper.make_node("ArgMax", ["contrib_real"], ["because_slot"], axis=1, keepdims=0),
        # the two largest contributions per recommended item (one when L == 1), in score units
        helper.make_node("Shape", ["hist_w"], ["hist_shape"]),
        helper.make_node("Gather", ["hist_shape", "one1"], ["l_dim"], axis=0),
        helper.make_node("Min", ["l_dim", "two1"], ["k_expl"]),
        helper.make_node(
            "TopK",
            ["contrib_real", "k_expl"],
            ["top_contrib", "because_top"],
            axis=1,
            largest=1,
            sorted=1,
        ),
        helper.make_node("Mul", ["top_contrib", "inv_k1"], ["because_contrib"]),
        # what the history adds to each score: the sum of the positive contributions
        helper.make_node("Where", ["real_slot3", "contrib", "zero_f"], ["contrib_or0"]),
        helper.make_node("Relu", ["contrib_or0"], ["contrib_pos"]),
        helper.make_node("ReduceSum", ["contrib_pos", "ax1"], ["pos_sum"], keepdims=0),
        *_history_pos_nodes(item_item is not None, "history_pos"),
    ]
    graph = helper.make_graph(
        nodes,
        "recsys_foldin_scorer",
        inputs=[
            helper.make_tensor_value_info("e0", TensorProto.FLOAT, ["B", dim]),
            helper.make_tensor_value_info("hist_idx", TensorProto.INT64, ["B", "L"]),
            helper.make_tensor_value_info("hist_w", TensorProto.FLOAT, ["B", "L"]),
            helper.make_tensor_value_info("excl_idx", TensorProto.INT64, ["B", "E"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        outputs=[
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", "K"]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["B", "K"]),
            helper.make_tensor_value_info("user_emb", TensorProto.FLOAT, ["B", dim]),
            helper.make_tensor_value_info("because_slot", TensorProto.INT64, ["B", "K"]),
            helper.make_tensor_value_info("because_top", TensorProto.INT64, ["B", "T", "K"]),
            helper.make_tensor_value_info("because_contrib", TensorProto.FLOAT, ["B", "T", "K"]),
            helper.make_tensor_value_info("history_pos", TensorProto.FLOAT, ["B", "K"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="recsys.export",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _history_pos_nodes(with_term: bool, out: str) -> list[onnx.NodeProto]:
    """``out``: the positive embedding contributions per recommended item, plus the item-item
    term's positive value at that item when there is a term (``scores`` minus its embedding
    score: the top items are never masked, so the difference is the term)."""
    if not with_term:
        return [helper.make_node("Mul", ["pos_sum", "inv_k1"], [out])]
    return [
        helper.make_node("Mul", ["pos_sum", "inv_k1"], ["history_pos_emb"]),
        helper.make_node("GatherElements", ["scores_emb", "indices"], ["emb_top"], axis=1),
        helper.make_node("Sub", ["scores", "emb_top"], ["term_top"]),
        helper.make_node("Relu", ["term_top"], ["term_pos"]),
        helper.make_node("Add", ["history_pos_emb", "term_pos"], [out]),
    ]


def _item_item_nodes(
    term: ItemItemTerm | None, inits: list[onnx.TensorProto], scores_out: str
) -> list[onnx.NodeProto]:
    """``scores_out``: the embedding scores, plus the term of each history slot when there is
    one (its tables are appended to ``inits``)."""
    if term is None:
        return [helper.make_node("MatMul", ["user_emb", "item_final_t"], [scores_out])]
    scores_in = "scores_emb"
    inits += [
        _const("item_item_index", np.ascontiguousarray(term.index, dtype=np.int32)),
        _const("item_item_value", np.ascontiguousarray(term.value, dtype=np.float32)),
        _const("rows_flat", np.array([0, -1], dtype=np.int64)),
    ]
    return [
        helper.make_node("MatMul", ["user_emb", "item_final_t"], [scores_in]),
        helper.make_node("Gather", ["item_item_index", "hist_idx"], ["ii_idx3"], axis=0),
        helper.make_node("Gather", ["item_item_value", "hist_idx"], ["ii_val3"], axis=0),
        helper.make_node("Unsqueeze", ["hist_w", "ax2"], ["hist_w3"]),
        helper.make_node("Mul", ["ii_val3", "hist_w3"], ["ii_upd3"]),
        helper.make_node("Reshape", ["ii_idx3", "rows_flat"], ["ii_idx"]),
        helper.make_node("Reshape", ["ii_upd3", "rows_flat"], ["ii_upd"]),
        helper.make_node(
            "ScatterElements",
            [scores_in, "ii_idx", "ii_upd"],
            [scores_out],
            axis=1,
            reduction="add",
        ),
    ]


def build_feature_projection(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """``x [B, F] -> x @ weight + bias`` : the layer-0 embedding of a user from features."""
    n_feat, dim = weight.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["e0"]),
        ],
        "recsys_user_feature_projection",
        inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", n_feat])],
        outputs=[helper.make_tensor_value_info("e0", TensorProto.FLOAT, ["B", dim])],
        initializer=[
            _const("W", np.ascontiguousarray(weight, dtype=np.float32)),
            _const("b", np.ascontiguousarray(bias, dtype=np.float32)),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="recsys.export"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
