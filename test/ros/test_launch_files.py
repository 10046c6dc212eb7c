"""Launch files: the launch package is not installable here, so they are checked statically: they compile, import
only known launch / launch_ros API, start an executable this package installs, set parameters the node declares,
remap topics the node uses, and name config files that exist and are installed. Where ``launch`` and
``launch_ros`` can be imported (a ROS install) the launch description is also built."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from casmtr_ros.ros.node import PUBLISHED, SUBSCRIBED
from casmtr_ros.ros.params import spec_by_name

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("casmtr_vo*.launch.py"))
# launch / launch_ros names these files may use (present in the launch API since ROS 2 Humble)
KNOWN_API = {
    "launch": {"LaunchDescription"},
    "launch.actions": {"DeclareLaunchArgument", "SetEnvironmentVariable", "ExecuteProcess", "IncludeLaunchDescription"},
    "launch.conditions": {"IfCondition", "UnlessCondition"},
    "launch.substitutions": {"LaunchConfiguration", "PathJoinSubstitution"},
    "launch_ros.actions": {"Node"},
    "launch_ros.substitutions": {"FindPackageShare"},
}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kw(call: ast.Call, key: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == key), None)


def _console_scripts() -> set[str]:
    text = (REPO / "setup.py").read_text()
    return set(re.findall(r'"([\w-]+)\s*=\s*[\w.]+:\w+"', text))


def test_both_launch_files_exist() -> None:
    assert [p.name for p in LAUNCH_FILES] == ["casmtr_vo.launch.py", "casmtr_vo_replay.launch.py"]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_is_consistent_with_the_package(path: Path) -> None:
    source = path.read_text()
    compile(source, str(path), "exec")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module in KNOWN_API, node.module
            assert {a.name for a in node.names} <= KNOWN_API[node.module], node.module
        assert not isinstance(node, ast.Import), "plain imports are not expected in a launch file"
    assert [f.name for f in tree.body if isinstance(f, ast.FunctionDef)] == ["generate_launch_description"]

    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration")}
    assert used <= declared, used - declared

    nodes = _calls(tree, "Node")
    assert len(nodes) == 1
    node = nodes[0]
    assert ast.literal_eval(_kw(node, "package")) == "casmtr_ros"
    assert ast.literal_eval(_kw(node, "executable")) in _console_scripts()
    assert ast.literal_eval(_kw(node, "name")) == "casmtr_vo_node"
    specs = spec_by_name()
    for item in _kw(node, "parameters").elts:
        if isinstance(item, ast.Dict):
            for key in item.keys:
                assert ast.literal_eval(key) in {*specs, "use_sim_time"}, ast.literal_eval(key)
    for pair in _kw(node, "remappings").elts:
        assert ast.literal_eval(pair.elts[0]) in {*SUBSCRIBED, *PUBLISHED}

    for join in _calls(tree, "PathJoinSubstitution"):
        parts = [ast.literal_eval(e) for e in join.args[0].elts[1:]]
        target = REPO.joinpath(*parts)
        assert target.is_file(), target
        assert parts[0] == "config" and target.suffix in (".yaml", ".xml")  # installed by setup.py's data_files
    assert 'glob("config/*.yaml") + glob("config/*.xml")' in (REPO / "setup.py").read_text()
    assert _calls(tree, "FindPackageShare")[0].args[0].value == "casmtr_ros"


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros not installed (no ROS install)")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds(path: Path) -> None:
    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.generate_launch_description(), LaunchDescription)


def test_fastdds_profile_is_valid_xml_with_large_shm_and_loopback_udp() -> None:
    import xml.etree.ElementTree as ET

    ns = {"f": "http://www.eprosima.com"}
    root = ET.parse(REPO / "config" / "fastdds_shm.xml").getroot()
    descriptors = {d.find("f:transport_id", ns).text: d for d in root.iter("{http://www.eprosima.com}transport_descriptor")}
    shm = [d for d in descriptors.values() if d.find("f:type", ns).text == "SHM"]
    udp = [d for d in descriptors.values() if d.find("f:type", ns).text == "UDPv4"]
    assert len(shm) == 1 and int(shm[0].find("f:segment_size", ns).text) >= 8 * 2**20
    assert [a.text for a in udp[0].iter("{http://www.eprosima.com}address")] == ["127.0.0.1"]
    participant = root.find("f:profiles/f:participant", ns)
    assert participant.get("is_default_profile") == "true"
    assert participant.find("f:rtps/f:useBuiltinTransports", ns).text == "false"
    assert {t.text for t in participant.iter("{http://www.eprosima.com}transport_id")} == set(descriptors)
