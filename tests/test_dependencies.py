"""Every third-party module the package imports is a dependency someone installing it can
find: a rosdep key in package.xml (the colcon path: `rosdep install`) or a name in README's
"Pip only" paragraph. The imports come from the same ast walk as tests/test_layout.py."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

from test_layout import PACKAGE, ROOT, collect_all, is_ros_message_package, package_sources

# Import name -> rosdep key, for modules whose key is not the import name itself.
ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "tqdm": "python3-tqdm",
               "matplotlib": "python3-matplotlib"}  # fmt: skip
# ROS packages: their rosdep key is the import name.
ROS_PACKAGES = {"rclpy", "ament_index_python"}
# Import name -> the pip distribution README must name as pip only.
PIP_ONLY = {"onnxruntime": "onnxruntime", "rosbags": "rosbags", "backports": "backports.zstd", "torch": "torch",
            "onnx": "onnx", "pybullet": "pybullet", "pybullet_data": "pybullet", "pybullet_utils": "pybullet",
            "foxglove": "foxglove-sdk", "simplejpeg": "simplejpeg", "safetensors": "safetensors"}  # fmt: skip
# In the standard library from Python 3.14 (compression.zstd), which this 3.11 interpreter does not list.
STDLIB_LATER = {"compression"}


def third_party_imports() -> dict[str, str]:
    """Top-level third-party module -> where it is first imported."""
    found: dict[str, str] = {}
    for imported in collect_all(package_sources()):
        top = imported.target.split(".")[0]
        if top == PACKAGE or top in sys.stdlib_module_names or top in STDLIB_LATER:
            continue
        found.setdefault(top, imported.where())
    return found


def package_xml_keys() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {element.text.strip() for element in root if element.tag.endswith("depend") and element.text}


def readme_pip_only() -> set[str]:
    """The backticked names of README's paragraph that starts with "Pip only"."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^Pip only.*?(?:\n\n|\Z)", text, flags=re.M | re.S)
    assert match, 'README.md has no paragraph starting with "Pip only"'
    return set(re.findall(r"`([^`\s]+)`", match.group(0)))


def test_every_third_party_import_is_a_declared_dependency() -> None:
    imports = third_party_imports()
    assert {"numpy", "rclpy", "rosbags", "sensor_msgs"} <= set(imports), "the ast walk found too little"
    keys, pip_only = package_xml_keys(), readme_pip_only()
    problems = []
    for module, where in sorted(imports.items()):
        if module in PIP_ONLY:
            if PIP_ONLY[module] not in pip_only:
                problems.append(f"{module} ({where}): README's 'Pip only' paragraph does not name `{PIP_ONLY[module]}`")
        elif module in ROSDEP_KEYS or module in ROS_PACKAGES or is_ros_message_package(module):
            key = ROSDEP_KEYS.get(module, module)
            if key not in keys:
                problems.append(f"{module} ({where}): package.xml has no <*depend>{key}</*depend>")
        else:
            problems.append(f"{module} ({where}): unknown third-party module: add its rosdep key to package.xml "
                            "and ROSDEP_KEYS, or name it in README's 'Pip only' paragraph and PIP_ONLY")
    assert not problems, "\n".join(problems)


def test_the_check_catches_an_undeclared_import(monkeypatch) -> None:
    """A module that is in neither place fails the check with its name."""
    sources = dict(package_sources())
    sources["sora_ros/core/_probe.py"] = "import shapely\nimport nav_msgs\n"
    monkeypatch.setattr(sys.modules[__name__], "package_sources", lambda: sources)
    keys = package_xml_keys() - {"nav_msgs"}
    monkeypatch.setattr(sys.modules[__name__], "package_xml_keys", lambda: keys)
    try:
        test_every_third_party_import_is_a_declared_dependency()
    except AssertionError as error:
        assert "shapely" in str(error) and "<*depend>nav_msgs" in str(error)
    else:
        raise AssertionError("an undeclared import passed")
