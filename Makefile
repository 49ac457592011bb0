# Set-up, tests and benchmarks. Every target sets up what is missing first;
# a second `make setup` changes nothing and takes a few seconds.
VENV    ?= .venv
PYTHON  ?= python3
EXTRAS  ?= ros,interfaces,train,sim,eval,view,dev
PY      := $(VENV)/bin/python
VENV_ABS = $(abspath $(VENV))
BUILD   := build/interfaces
# Discovery stays on this machine unless the user says otherwise.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup ros2-tools test bench demo clean

setup: $(VENV)/.interfaces-built
	@$(VENV)/bin/sora-ros doctor --quiet
	@echo "Set up in $(VENV). README's commands call sora-ros bare: run 'source $(VENV)/bin/activate'" \
	  "in each new shell to put it on PATH (or call $(VENV)/bin/sora-ros)."

# The Python package (editable), the ROS 2 Kilted wheels and the extras.
# editable_mode=compat puts the source tree on sys.path, so that the generated
# sora_ros.msg/.srv in site-packages merge into the same package.
$(VENV)/.deps-installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --disable-pip-version-check -e ".[$(EXTRAS)]" --config-settings editable_mode=compat
	@touch $@

# msg/ and srv/ built with rosidl against the wheels and installed into the venv, with the
# ROS layout colcon installs: the ament index entry, lib/sora_ros/<node> executables and
# share/sora_ros/{launch,config,models,package.xml} (linked to this tree).
$(VENV)/.interfaces-built: $(VENV)/.deps-installed CMakeLists.txt package.xml cmake/pip_wheel_fixups.cmake $(wildcard msg/*.msg srv/*.srv scripts/sora-ros* launch/* config/* models/*/*)
	@mkdir -p $(BUILD)
	AMENT_PREFIX_PATH=$(VENV_ABS) CMAKE_PREFIX_PATH=$(VENV_ABS) cmake -S . -B $(BUILD) \
		-DCMAKE_INSTALL_PREFIX=$(VENV_ABS) -DPython3_EXECUTABLE=$(VENV_ABS)/bin/python \
		-DSORA_ROS_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF \
		-DCMAKE_PROJECT_INCLUDE=$(abspath cmake/pip_wheel_fixups.cmake) > $(BUILD).log 2>&1 \
		|| { cat $(BUILD).log; exit 1; }
	AMENT_PREFIX_PATH=$(VENV_ABS) cmake --build $(BUILD) --target install -j 2 >> $(BUILD).log 2>&1 \
		|| { tail -50 $(BUILD).log; exit 1; }
	@touch $@

# The real `ros2 launch` / `ros2` CLI (built from upstream source, not on PyPI) from
# ../shared/ros2-tools, for the tests that run the launch files under it; its install
# script keeps its own stamp and skips what is there.
ROS2_TOOLS ?= ../shared/ros2-tools
ros2-tools: setup
	@test -x $(ROS2_TOOLS)/install.sh || { echo "ros2-tools: $(ROS2_TOOLS)/install.sh not found (set ROS2_TOOLS=...)"; exit 1; }
	@$(ROS2_TOOLS)/install.sh $(VENV) cmake/pip_wheel_fixups.cmake

# pytest exits 5 when it collects nothing: report it, don't fail on it. Tests marked own_process
# run in a pytest of their own (see tests/conftest.py); the run fails if either run fails.
test: setup ros2-tools
	@$(PY) -m pytest -m "not own_process" $(PYTEST_ARGS); rc=$$?; \
	$(PY) -m pytest -m own_process $(PYTEST_ARGS); rc2=$$?; \
	for code in $$rc $$rc2; do if [ $$code -ne 0 ] && [ $$code -ne 5 ]; then exit $$code; fi; done

# The live demo: sim + world model + planner over DDS, then out/demo/. DEMO_ARGS passes options,
# e.g. make demo DEMO_ARGS="--video clip.mp4 --duration 30".
demo: setup
	$(VENV)/bin/sora-ros demo $(DEMO_ARGS)

bench: setup
	$(VENV)/bin/sora-ros bench image

clean:
	rm -rf $(VENV) build
