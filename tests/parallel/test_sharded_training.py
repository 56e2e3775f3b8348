"""On 8 forced CPU devices: sharded training matches one device; shardings, donation,
checkpoint resharding and bad-input errors (checks_training.py, run in a subprocess)."""
import pytest


@pytest.fixture(scope="module")
def result(device_script):
  return device_script("checks_training.py")


def test_loss_and_gradients_match_one_device(result):
  """Global in-batch negatives: the candidate matrix is the global batch under GSPMD, so loss
  and gradients on a 2 x 4 mesh (and FSDP on 4 x 2) equal the single-device run."""
  assert result["devices"] == 8
  for name in ("dp2_mp4", "fsdp4_mp2"):
    r = result[name]
    assert r["init_err"] == 0.0, name  # init is sharding-invariant
    assert r["loss_err"] <= 1e-5, (name, r["loss"], result["ref_loss"])
    assert r["grad_err"] <= 1e-5, (name, r["grad_err"])
  assert result["dp2_mp4"]["step_loss"] == pytest.approx(result["ref_loss"], rel=1e-5)


def test_catalogue_negatives_match_one_device(result):
  """loss.negatives="catalogue" embeds the corpus through the row-sharded table each step,
  and model.output_skip="newest" the history items (the recipe's sparse path)."""
  r = result["catalogue"]
  assert r["ref_loss"] > 0 and r["loss_err"] <= 1e-5, r
  assert r["grad_err"] <= 1e-5, r


def test_dropout_masks_match_one_device(result):
  """model.dropout: the same key gives the same masks, loss and gradients on a 2 x 4 mesh."""
  r = result["dropout"]
  assert abs(r["ref_loss"] - r["plain_loss"]) > 1e-4, r  # dropout did act
  assert r["loss_err"] <= 1e-5, r
  assert r["grad_err"] <= 1e-5, r


def test_solar_long_history_matches_one_device(result):
  """model.long_history="solar": the SVD-Attention memory is per example, so batch and FSDP
  sharding (4 x 2) give the single-device loss and gradients."""
  r = result["solar"]
  assert r["ref_loss"] > 0 and r["loss_err"] <= 1e-5, r
  assert r["grad_err"] <= 1e-5, r


def test_table_is_row_sharded_over_model(result):
  rows = result["table_rows"]
  assert rows % 128 == 0 and rows >= 501  # 500 items + padding row, padded to 128
  r = result["dp2_mp4"]
  assert r["table_spec"] == ["model"] and r["table_shard"] == [rows // 4, 32]
  assert r["table_grad_spec"] == ["model"] and r["moment_spec"] == ["model"]
  assert r["step_table_spec"] == ["model"] and r["table_devices"] == 8
  f = result["fsdp4_mp2"]
  assert f["table_spec"] == ["model", "data"] and f["table_shard"] == [rows // 2, 32 // 4]


def test_batch_and_dense_shardings(result):
  r = result["dp2_mp4"]
  assert r["batch_spec"] == ["data"] and r["batch_shard"] == [16, 32]  # 32 rows over 2
  assert r["dense_specs"] == ["[]"]  # dense weights replicated without FSDP
  f = result["fsdp4_mp2"]
  assert f["batch_shard"] == [8, 32]
  assert "['data']" in f["dense_specs"] and "[None, 'data']" in f["dense_specs"]


def test_train_step_donates_state(result):
  assert result["dp2_mp4"]["donated"]


def test_checkpoint_saved_on_8_restores_on_4_and_1(result):
  ckpt = result["checkpoint"]
  rows = result["table_rows"]
  for name, devices, shard in (("4", 4, [rows // 4, 32]), ("1", 1, [rows, 32])):
    r = ckpt[name]
    assert r["identical"] and r["num_leaves"] > 10, name
    assert r["table_devices"] == devices and r["table_shard"] == shard, name
    assert r["step"] == 1 and r["data_state"] == {"next_index": 7}


def test_bad_mesh_and_batch_fail_before_compiling(result):
  e = result["errors"]
  assert "must divide the device count" in e["mesh"] and "'data': 3" in e["mesh"]
  assert "batch_size=36 is not divisible by the data-parallel size 8" in e["batch"]
  assert not e["mesh_workdir_created"] and not e["batch_workdir_created"]
