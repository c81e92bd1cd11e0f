"""Makes the PyTorch-format fixtures of tests/checkpoint_formats.rs: checkpoints as torch.save
writes them in the cases convscope's reader must handle, each beside the same tensors made
contiguous and saved as safetensors.

- `strided_checkpoint_21.pth`: saved under a 21-character file stem (the archive's first entry,
  `<stem>/data.pkl`, is then 76 bytes long in the central directory, the case the zip crate's
  offset guess got wrong), holding tensors in every storage layout a state dict meets:
  channels_last 4-D weights (f32 and f16), a transposed 2-D view, a view starting inside its
  storage, two views of one shared storage, and a plain one.

- `protocol4.pth` and `protocol5.pth`: the same tensors pickled with protocols 4 and 5
  (`torch.save(..., pickle_protocol=N)`), whose spellings convscope rewrites as protocol 2.

- files that are not state dicts, each to be refused with a line saying what it is and what to
  do: `whole_module.pth` (`torch.save(model)`), `torchscript.pt` (`torch.jit.save`).

    python scripts/make_checkpoint_fixtures.py
"""

import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")


def main():
    gen = torch.Generator().manual_seed(77)
    base = torch.randn(6, 5, generator=gen)
    shared = torch.randn(10, generator=gen)
    tensors = {
        "conv.weight": torch.randn(4, 3, 3, 2, generator=gen).to(memory_format=torch.channels_last),
        "half.weight": torch.randn(2, 3, 2, 2, generator=gen).half().to(memory_format=torch.channels_last),
        "fc.weight": base.t(),
        "fc.bias": shared[3:7],
        "other.bias": shared[:4],
        "plain": torch.arange(12, dtype=torch.float32).reshape(3, 4),
    }
    assert not tensors["conv.weight"].is_contiguous() and not tensors["fc.weight"].is_contiguous()
    stem = "strided_checkpoint_21"
    assert len(stem) == 21
    torch.save(tensors, os.path.join(OUT, f"{stem}.pth"))
    save_file({k: v.float().contiguous().clone() for k, v in tensors.items()},
              os.path.join(OUT, f"{stem}_expected.safetensors"))
    for protocol in (4, 5):
        torch.save(tensors, os.path.join(OUT, f"protocol{protocol}.pth"),
                   pickle_protocol=protocol)

    torch.manual_seed(3)
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.ReLU()).eval()
    torch.save(tiny, os.path.join(OUT, "whole_module.pth"))
    torch.jit.save(torch.jit.script(tiny), os.path.join(OUT, "torchscript.pt"))


if __name__ == "__main__":
    main()
