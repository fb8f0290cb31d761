"""Install Triton's real perf_analyzer into a virtualenv on a Debian host whose glibc is older than 2.38.

The PyPI wheels of `perf-analyzer` 2.60.0 are tagged manylinux_2_38: the binary needs glibc 2.38 and
libstdc++ 3.4.32, and pip on Debian 12 (glibc 2.36) only finds the 0.1.0 stub. This script:

1. downloads the 2.60.0 wheel with pip (`--platform manylinux_2_38_x86_64`) and unpacks its binary into
   `<venv>/opt/perf-analyzer/bin/`;
2. fetches Debian 13's `libc6`, `libstdc++6` and `libgcc-s1` with `apt-get download` through a private sources
   list, lists and cache in a temporary directory (the system's apt state is not touched), from the Debian mirror
   the system's own apt sources name, and unpacks them with `dpkg-deb -x` into `<venv>/opt/perf-analyzer/libs`;
3. writes `<venv>/bin/perf_analyzer`, which runs the binary through that loader with those libraries first
   (zlib and OpenSSL 3 come from the system).

Usage: python tools/install_perf_analyzer.py <venv>   (what `make perf-analyzer` runs)
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_VERSION = "2.60.0"
WHEEL_PLATFORM = "manylinux_2_38_x86_64"
DEBIAN_SUITE = "trixie"
DEBIAN_PACKAGES = ("libc6", "libstdc++6", "libgcc-s1")
LIB_SUBDIR = "usr/lib/x86_64-linux-gnu"
SYSTEM_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu")
APT_SOURCE_FILES = ("/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*")))


def debian_mirror(source_files=APT_SOURCE_FILES) -> str:
    """The first Debian archive URI (not the security archive) the system's apt sources use."""
    for path in source_files:
        if not (path.endswith(".list") or path.endswith(".sources")) or not os.path.isfile(path):
            continue
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        for uri in _source_uris(text):
            if re.search(r"/debian/?$", uri):
                return uri.rstrip("/")
    raise SystemExit("no Debian mirror found in /etc/apt/sources.list(.d): perf_analyzer needs Debian's apt")


def _source_uris(text: str) -> list[str]:
    """URIs of one apt sources file, in either format (one-line `deb URI ...` or deb822 `URIs:`)."""
    uris = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("URIs:"):
            uris.extend(line[len("URIs:"):].split())
        elif line.startswith("deb "):
            words = re.sub(r"\[[^]]*\]", " ", line).split()
            if len(words) >= 2:
                uris.append(words[1])
    return uris


def download_binary(python: str, dest: Path, tmp: Path) -> None:
    """Fetch the real perf_analyzer wheel and unpack its binary to `dest`."""
    subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--platform", WHEEL_PLATFORM, "--dest", str(tmp),
                    f"perf-analyzer=={WHEEL_VERSION}"], check=True)
    wheel = next(tmp.glob(f"perf_analyzer-{WHEEL_VERSION}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with archive.open("perf_analyzer/bin/perf_analyzer") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def download_libraries(libs: Path, tmp: Path) -> None:
    """apt-get download Debian 13's C and C++ runtime through a private sources list; dpkg-deb -x into `libs`."""
    apt = tmp / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "debs"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb {debian_mirror()} {DEBIAN_SUITE} main\n", encoding="utf-8")
    options = [f"-oDir::Etc::sourcelist={apt / 'sources.list'}",
               f"-oDir::Etc::sourceparts={apt / 'sources.list.d'}",
               f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::Cache={apt / 'cache'}"]
    if os.geteuid() == 0:  # apt's _apt sandbox user could not write into this private temporary directory
        options.append("-oAPT::Sandbox::User=root")
    subprocess.run(["apt-get", *options, "-q", "update"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", *options, "-q", "download", *DEBIAN_PACKAGES], check=True, cwd=apt / "debs",
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(libs, ignore_errors=True)
    for deb in sorted((apt / "debs").glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(libs)], check=True)


def write_wrapper(wrapper: Path, binary: Path, libs: Path) -> None:
    """The `perf_analyzer` command: the real binary run by Debian 13's loader, its libraries searched first."""
    lib_dir = libs / LIB_SUBDIR
    search = ":".join([str(lib_dir), *SYSTEM_LIB_DIRS])
    wrapper.write_text(
        "#!/bin/sh\n"
        f"# Triton perf_analyzer {WHEEL_VERSION} (built for glibc 2.38) through Debian {DEBIAN_SUITE}'s loader;"
        " written by tools/install_perf_analyzer.py\n"
        f'exec "{lib_dir}/ld-linux-x86-64.so.2" --library-path "{search}" "{binary}" "$@"\n',
        encoding="utf-8")
    wrapper.chmod(0o755)


def works(wrapper: Path) -> bool:
    """True when the installed command runs (perf_analyzer prints its version and exits 0)."""
    if not wrapper.exists():
        return False
    result = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True)
    return result.returncode == 0 and "Perf Analyzer" in result.stdout + result.stderr


def install(venv: Path) -> Path:
    """Install perf_analyzer into `venv` (nothing to do when it already works); return the command's path."""
    wrapper = venv / "bin" / "perf_analyzer"
    if works(wrapper):
        return wrapper
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SystemExit("perf_analyzer install needs Debian's apt-get and dpkg-deb")
    home = venv / "opt" / "perf-analyzer"
    binary, libs = home / "bin" / "perf_analyzer", home / "libs"
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as tmp:
        download_binary(str(venv / "bin" / "python"), binary, Path(tmp))
        download_libraries(libs, Path(tmp))
    write_wrapper(wrapper, binary, libs)
    if not works(wrapper):
        raise SystemExit(f"{wrapper} was installed but does not run")
    return wrapper


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venv", type=Path, help="the virtualenv to install into (its bin/python runs pip)")
    args = parser.parse_args(argv)
    wrapper = install(args.venv.resolve())
    version = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True)
    print((version.stdout + version.stderr).strip(), "->", wrapper)


if __name__ == "__main__":
    sys.exit(main())
