"""The wheel, as an operator installs it into Aleph's image: built by its own backend, installed into a
clean virtual environment, its entry point found through importlib.metadata, and its declared ranges
leaving each Aleph line's pinned packages alone (pip check)."""
import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[2]

# What each line pins or declares (Aleph 4.1.6's requirements.txt; OpenAleph 5.3's pyproject.toml).
PINS = {
    "Aleph 4.1.6": {"sqlalchemy": "2.0.21", "prometheus-client": "0.17.1"},
    "OpenAleph 5.3": {"sqlalchemy": "2.0.51", "prometheus-client": "0.17.1"},
}


def run(*args: str, cwd: Path = PYTHON_DIR) -> str:
    done = subprocess.run(list(args), cwd=str(cwd), capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, "%s failed (%d):\n%s%s" % (" ".join(args), done.returncode, done.stdout, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(PYTHON_DIR))
    wheels = list(out.glob("rolesync-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_holds_the_typed_package_and_declares_the_entry_point(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("__init__.py", "client.py", "errors.py", "aleph.py", "_sqlstates.py", "_version.py", "py.typed"):
        assert "rolesync/" + module in names
    assert not [n for n in names if "tests/" in n or "standins" in n]
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[aleph.init]\nrolesync = rolesync.aleph:init" in entry_points


def test_the_wheel_is_the_release_the_npm_package_is(wheel):
    npm_version = json.loads((PYTHON_DIR.parent / "package.json").read_text())["version"]
    assert wheel.name == "rolesync-%s-py3-none-any.whl" % npm_version
    import rolesync

    assert rolesync.__version__ == npm_version


def test_its_ranges_include_what_each_line_pins(wheel):
    from pip._vendor.packaging.requirements import Requirement

    metadata = zipfile.ZipFile(wheel).read(next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))).decode()
    requirements = [Requirement(line.split(":", 1)[1].strip()) for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    aleph_extra = [r for r in requirements if r.marker is not None and r.marker.evaluate({"extra": "aleph"})]
    assert {r.name.lower() for r in aleph_extra} == {"sqlalchemy", "prometheus-client"}
    assert not [r for r in requirements if r.marker is None], "no hard dependency: the client uses what the app has"
    for line, pins in PINS.items():
        for r in aleph_extra:
            assert r.specifier.contains(pins[r.name.lower()]), "%s pins %s %s, outside %s" % (line, r.name, pins[r.name.lower()], r.specifier)


def test_a_clean_environment_finds_the_entry_point_and_pip_check_passes(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(str(env_dir))
    python = str(env_dir / "bin" / "python")
    # The plugin's extra, as an Aleph image gets it; SQLAlchemy held below 2.1 as both lines are.
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel) + "[aleph]", "SQLAlchemy<2.1")
    run(python, "-m", "pip", "check")
    found = json.loads(
        run(
            python,
            "-c",
            "import json; from importlib.metadata import entry_points, version; "
            "eps = [e for e in entry_points(group='aleph.init')]; "
            "print(json.dumps({'eps': [[e.name, e.value] for e in eps], 'version': version('rolesync')}))",
            cwd=tmp_path,
        )
    )
    assert found["eps"] == [["rolesync", "rolesync.aleph:init"]]
    loaded = run(python, "-c", "from importlib.metadata import entry_points; "
                 "ep = [e for e in entry_points(group='aleph.init')][0]; print(ep.load().__module__)", cwd=tmp_path)
    assert loaded.strip() == "rolesync.aleph"
