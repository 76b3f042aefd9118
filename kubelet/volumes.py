"""Pod volumes on the node: emptyDir, hostPath, configMap, secret, downwardAPI, projected, PVC.

A projected volume's ``serviceAccountToken`` sources hold the tokens the kubelet fetched with
TokenRequests (:mod:`kubelet.sa_token`), passed in through ``PodSources.tokens``; the file is
written again, atomically, when the kubelet refreshes the token.

Each pod gets ``{root}/pods/{uid}/volumes/{plugin}/{name}``.  Files of configMap, secret,
downwardAPI and projected volumes are written there (and rewritten when the objects change — the
kubelet calls :meth:`VolumeManager.setup` on every sync); containers bind-mount the directory.
An emptyDir with ``medium: Memory`` is a Docker ``local`` volume of type tmpfs (``sizeLimit``
becomes its size), so every container of the pod sees the same tmpfs.

:func:`volume_files` is pure: the kubelet fetches the ConfigMaps and Secrets and passes them in.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apimachinery.quantity import parse_quantity

from .envvars import POD_IP_FIELDS, ConfigError, PodSources, field_ref_value, resource_field_value
from .runtime import LABEL_POD_UID, Mount
from .sa_token import source_id as token_source_id

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class MountError(Exception):
    """A volume cannot be set up (reported as a ``FailedMount`` event; the pod stays ContainerCreating)."""


@dataclass
class VolumeSource:
    source: str  # host path, or Docker volume name
    type: str = "bind"  # "bind" or "volume"
    read_only: bool = False


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _items(
    data: Mapping[str, bytes], items: list[Obj] | None, default_mode: int, what: str, optional: bool
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise MountError(f"configuration key {key!r} not found in {what}")
        mode = item.get("mode")
        out[item.get("path") or key] = (data[key], int(mode) if mode is not None else default_mode)
    return out


def _cm_bytes(cm: Obj) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: _b64(v) for k, v in (cm.get("binaryData") or {}).items()})
    return data


def _secret_bytes(secret: Obj) -> dict[str, bytes]:
    data = {k: _b64(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def _downward_items(
    pod: Obj, items: list[Obj], default_mode: int, sources: PodSources
) -> dict[str, tuple[bytes, int]]:
    out: dict[str, tuple[bytes, int]] = {}
    for item in items or []:
        mode = item.get("mode")
        mode = int(mode) if mode is not None else default_mode
        try:
            if item.get("fieldRef"):
                path = item["fieldRef"].get("fieldPath", "")
                value = field_ref_value(pod, path, sources.pod_ip, sources.host_ip)
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                target: Obj = {}
                for c in (pod.get("spec") or {}).get("containers") or []:
                    if c.get("name") == ref.get("containerName") or not ref.get("containerName"):
                        target = c
                        break
                value = resource_field_value(target, ref.get("resource", ""), ref.get("divisor"))
            else:
                continue
        except ConfigError as exc:
            raise MountError(str(exc)) from exc
        out[item.get("path", "")] = (value.encode(), mode)
    return out


def volume_files(volume: Obj, pod: Obj, sources: PodSources) -> dict[str, tuple[bytes, int]] | None:
    """The files a configMap/secret/downwardAPI/projected volume holds (None for other kinds)."""
    if "configMap" in volume or "secret" in volume:
        is_cm = "configMap" in volume
        src = volume["configMap" if is_cm else "secret"] or {}
        name_key = "name" if is_cm else "secretName"
        mode = int(src.get("defaultMode", 0o644))
        obj = sources.lookup(src, is_cm, name_key, MountError)
        if obj is None:
            return {}
        data = _cm_bytes(obj) if is_cm else _secret_bytes(obj)
        what = f"{'configmap' if is_cm else 'secret'} {src.get(name_key)}"
        return _items(data, src.get("items"), mode, what, bool(src.get("optional")))
    if "downwardAPI" in volume:
        src = volume["downwardAPI"] or {}
        return _downward_items(pod, src.get("items") or [], int(src.get("defaultMode", 0o644)), sources)
    if "projected" in volume:
        src = volume["projected"] or {}
        mode = int(src.get("defaultMode", 0o644))
        out: dict[str, tuple[bytes, int]] = {}
        for source in src.get("sources") or []:
            if source.get("configMap") is not None:
                out.update(
                    volume_files({"configMap": {"defaultMode": mode, **source["configMap"]}}, pod, sources)
                    or {}
                )
            elif source.get("secret") is not None:
                s = dict(source["secret"])
                s["secretName"] = s.pop("name", "")
                out.update(volume_files({"secret": {"defaultMode": mode, **s}}, pod, sources) or {})
            elif source.get("downwardAPI") is not None:
                out.update(_downward_items(pod, source["downwardAPI"].get("items") or [], mode, sources))
            elif source.get("serviceAccountToken") is not None:
                sat = source["serviceAccountToken"]
                token = sources.tokens.get(token_source_id(sat))
                if token is None:
                    raise MountError("no service account token for the projection (not fetched yet)")
                out[str(sat.get("path") or "token")] = (token.encode(), mode)
        return out
    return None


def needs_pod_ip(pod: Obj) -> bool:
    """Whether a downwardAPI volume (or projection) of the pod writes the pod's IP: its files can
    only be written once the sandbox has an IP."""
    for v in (pod.get("spec") or {}).get("volumes") or []:
        item_lists = [(v.get("downwardAPI") or {}).get("items") or []]
        for s in (v.get("projected") or {}).get("sources") or []:
            item_lists.append((s.get("downwardAPI") or {}).get("items") or [])
        for items in item_lists:
            for item in items:
                if (item.get("fieldRef") or {}).get("fieldPath") in POD_IP_FIELDS:
                    return True
    return False


def referenced_objects(pod: Obj) -> tuple[set[str], set[str]]:
    """ConfigMap and Secret names the pod's volumes refer to."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("configMap"):
            cms.add(v["configMap"].get("name", ""))
        if v.get("secret"):
            secrets.add(v["secret"].get("secretName", ""))
        for s in (v.get("projected") or {}).get("sources") or []:
            if s.get("configMap"):
                cms.add(s["configMap"].get("name", ""))
            if s.get("secret"):
                secrets.add(s["secret"].get("name", ""))
    return cms, secrets


def check_host_path(path: str, kind: str) -> None:
    """Kubernetes' hostPath ``type`` checks (creating the path for the ``OrCreate`` kinds)."""
    p = Path(path)
    if kind == "DirectoryOrCreate":
        p.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch(mode=0o644)
    if not kind:
        return
    if not p.exists():
        raise MountError(f"hostPath type check failed: {path} does not exist")
    mode = p.stat().st_mode
    checks = {
        "Directory": stat.S_ISDIR,
        "DirectoryOrCreate": stat.S_ISDIR,
        "File": stat.S_ISREG,
        "FileOrCreate": stat.S_ISREG,
        "Socket": stat.S_ISSOCK,
        "CharDevice": stat.S_ISCHR,
        "BlockDevice": stat.S_ISBLK,
    }
    check = checks.get(kind)
    if check is not None and not check(mode):
        raise MountError(f"hostPath type check failed: {path} is not a {kind}")


def write_files(directory: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    """Make ``directory`` hold exactly ``files``; True if anything changed."""
    changed = False
    directory.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for rel, (content, mode) in files.items():
        target = (directory / rel).resolve()
        if directory.resolve() not in target.parents:
            raise MountError(f"invalid volume path {rel!r}")
        wanted.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            same = target.read_bytes() == content and stat.S_IMODE(target.stat().st_mode) == mode
        except OSError:
            same = False
        if same:
            continue
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        changed = True
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(root, name).resolve()
            if path not in wanted:
                path.unlink()
                changed = True
    return changed


class VolumeManager:
    """Sets up and tears down the volumes of the pods on this node."""

    def __init__(self, root_dir: str, runtime: Any) -> None:
        self.root = Path(root_dir)
        self.runtime = runtime

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid

    @staticmethod
    def memory_volume_name(uid: str, name: str) -> str:
        return f"minik-{uid}-{name}"

    async def setup(
        self, pod: Obj, sources: PodSources, pvc_paths: Mapping[str, str]
    ) -> dict[str, VolumeSource]:
        out: dict[str, VolumeSource] = {}
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = vol.get("name", "")
            try:
                out[name] = await self._setup_one(vol, name, pod, sources, pvc_paths)
            except MountError as exc:
                # Kubernetes' wording, so `kubectl describe pod` reads the same
                raise MountError(f'MountVolume.SetUp failed for volume "{name}" : {exc}') from exc
        return out

    async def _setup_one(
        self, vol: Obj, name: str, pod: Obj, sources: PodSources, pvc_paths: Mapping[str, str]
    ) -> VolumeSource:
        uid = (pod.get("metadata") or {}).get("uid", "")
        base = self.pod_dir(uid) / "volumes"
        if "emptyDir" in vol:
            ed = vol.get("emptyDir") or {}
            if ed.get("medium") == "Memory":
                opts = {"type": "tmpfs", "device": "tmpfs"}
                if ed.get("sizeLimit"):
                    opts["o"] = f"size={int(parse_quantity(str(ed['sizeLimit'])))}"
                vname = self.memory_volume_name(uid, name)
                await self.runtime.create_volume(vname, opts, {LABEL_POD_UID: uid})
                return VolumeSource(vname, "volume")
            else:
                d = base / "kubernetes.io~empty-dir" / name
                d.mkdir(parents=True, exist_ok=True)
                os.chmod(d, 0o777)
                return VolumeSource(str(d))
        elif "hostPath" in vol:
            hp = vol.get("hostPath") or {}
            path = str(hp.get("path", ""))
            try:
                check_host_path(path, str(hp.get("type") or ""))
            except OSError as exc:
                raise MountError(f"hostPath {path}: {exc}") from exc
            return VolumeSource(path)
        elif "persistentVolumeClaim" in vol:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName", "")
            pvc_path = pvc_paths.get(claim)
            if not pvc_path:
                raise MountError(f'persistentvolumeclaim "{claim}" is not bound to a usable volume')
            path = pvc_path
            read_only = bool((vol.get("persistentVolumeClaim") or {}).get("readOnly"))
            if path.startswith("volume:"):
                return VolumeSource(path[len("volume:") :], "volume", read_only)
            else:
                Path(path).mkdir(parents=True, exist_ok=True)
                return VolumeSource(path, "bind", read_only)
        else:
            files = volume_files(vol, pod, sources)
            if files is None:
                raise MountError(
                    f"volume {name!r}: unsupported volume type {sorted(k for k in vol if k != 'name')}"
                )
            plugin = next(k for k in vol if k != "name")
            d = base / f"kubernetes.io~{plugin.lower()}" / name
            try:
                write_files(d, files)
            except OSError as exc:
                raise MountError(f"volume {name!r}: {exc}") from exc
            return VolumeSource(str(d), "bind", True)

    @staticmethod
    def mounts_for(container: Obj, sources: Mapping[str, VolumeSource]) -> list[Mount]:
        mounts: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            src = sources.get(vm.get("name", ""))
            if src is None:
                raise MountError(f"volume {vm.get('name')!r} not found in the pod's volumes")
            read_only = bool(vm.get("readOnly")) or src.read_only
            sub = str(vm.get("subPath") or "")
            source = src.source
            if sub:
                if src.type != "bind":
                    raise MountError(
                        f"subPath is not supported on volume {vm.get('name')!r} (a tmpfs volume)"
                    )
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise MountError(f"invalid subPath {sub!r}")
                p = Path(source) / sub
                if not p.exists():
                    p.mkdir(parents=True, exist_ok=True)
                source = str(p)
            mounts.append(Mount(str(vm.get("mountPath", "")), source, src.type, read_only))
        return mounts

    async def teardown(self, uid: str) -> None:
        d = self.pod_dir(uid)
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
        for vname, labels in await self.runtime.list_volumes():
            if labels.get(LABEL_POD_UID) == uid:
                await self.runtime.remove_volume(vname)
