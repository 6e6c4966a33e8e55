"""The container a cell runs in (Dockerfile.gpu) and whether this host can run it.

An image built from Dockerfile.gpu sets ``HARNESS_IMAGE`` (its target) and
``HARNESS_BASE_IMAGE`` (the base, tag and digest) and holds ``/etc/harness-image.json``
(docker/image_facts.py: runtime versions and the CUDA its kernels were built for). An image
cannot know its own digest, so ``HARNESS_IMAGE_DIGEST`` is passed at ``docker run``.

CUDA's minor-version compatibility lets a 12.x build run on any 12.y driver (y < x) except for
PTX compiled at run time, so a newer minor is a flag, an older major a refusal.
"""

from __future__ import annotations

import os
from typing import Any

from harness.config.errors import UserError
from harness.config.schema import Device, HarnessConfig
from harness.measure.metadata import gpu_info, image_facts

_gpu: dict[str, Any] = {}


def image_tags(image: dict[str, Any] | None, driver_cuda: str | None) -> dict[str, str]:
    if image is None:
        return {"image.name": "none (not in a harness image)"}
    tags = {
        "image.name": str(image["name"]),
        "image.base": str(image["base"]),
        "image.cuda": str(image.get("cuda")),
        "image.digest": str(
            image["digest"]
            or "unknown: pass -e HARNESS_IMAGE_DIGEST=$(docker inspect --format "
            "'{{index .RepoDigests 0}}' IMAGE) to docker run"
        ),
    }
    tags.update({f"image.pkg.{k}": str(v) for k, v in (image.get("packages") or {}).items()})
    _, compat = driver_gap(image.get("cuda"), driver_cuda)
    if compat:
        tags["image.cuda_compat"] = compat
    return tags


def _version(text: str) -> tuple[int, int]:
    major, minor = [*text.split("."), "0"][:2]
    return int(major), int(minor)


def driver_gap(image_cuda: str | None, driver_cuda: str | None) -> tuple[str | None, str | None]:
    """(refusal, flag) comparing the CUDA an image was built for with the driver's."""
    if not image_cuda or not driver_cuda:
        return None, None
    need, have = _version(image_cuda), _version(driver_cuda)
    if have >= need:
        return None, None
    if have[0] < need[0]:
        return (
            f"this image's kernels need CUDA {image_cuda} but the host driver supports CUDA "
            f"{driver_cuda} at most: update the NVIDIA driver (CUDA {need[0]}.x needs a "
            f"{need[0]}.x driver) or use an image built for CUDA {driver_cuda}",
            None,
        )
    return None, (
        f"image built for CUDA {image_cuda} on a CUDA {driver_cuda} driver: runs through "
        "minor-version compatibility (kernels JIT-compiled from PTX would fail)"
    )


def _gpus() -> dict[str, Any]:
    if not _gpu:
        _gpu.update(gpu_info())
    return _gpu


def check_host(config: HarnessConfig) -> str | None:
    """One line when this cell cannot run on this host (the cell is then not launched);
    UserError when no GPU cell can (the image's CUDA is newer than the driver, or the
    sweep is meant for another image)."""
    wanted, here = config.run.image, os.environ.get("HARNESS_IMAGE")
    if wanted is not None and wanted != here:
        where = f"image {here}" if here else "outside a harness image (HARNESS_IMAGE unset)"
        raise UserError(
            f"run.image={wanted}: this sweep is meant for the {wanted} image of Dockerfile.gpu "
            f"but runs {where}; build it with `docker build -f Dockerfile.gpu --target "
            f"{wanted} .`, or drop run.image"
        )
    if config.hardware.device is not Device.cuda:
        return None
    gpus = _gpus()
    if not gpus.get("available"):
        return (
            f"hardware.device=cuda but this machine has no GPU ({gpus.get('reason')}); run "
            f"hardware={config.hardware.name} on a GPU box, or choose hardware=cpu_local"
        )
    image = image_facts()
    refusal, _ = driver_gap(image.get("cuda") if image else None, gpus.get("cuda_driver"))
    if refusal:
        raise UserError(refusal)
    return None
