"""ROS parameters as users give them: `IntegersForDoubles`, the node mixin that takes an integer
given for a double parameter."""

from __future__ import annotations

from sora_ros.core.parameters import as_declared_type


class IntegersForDoubles:
    """Node mixin, named before Node or LifecycleNode in the bases: an integer given for a DOUBLE
    parameter is taken as that double, as a user expects of a gain or a rate (`-p risk_weight:=8`, a
    params file's `risk_weight: 8`, `ros2 param set /planner risk_weight 8`). ROS itself refuses it:
    InvalidParameterTypeException at declaration, "Wrong parameter type" when set. The descriptor's
    range then applies to the double. Other types (a string or a bool for a double) are still refused,
    by ROS, with its message naming the parameter and both types. A parameter declared with
    dynamic_typing is left alone (its type is whatever it is given).

        class VideoCameraNode(IntegersForDoubles, Node): ...
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.add_pre_set_parameters_callback(self._integers_as_doubles)

    def declare_parameters(self, namespace: str, parameters: list, ignore_override: bool = False) -> list:
        """rclpy's declare_parameters (which declare_parameter calls), an integer override of a double
        parameter first made that double (sora_ros.core.parameters.as_declared_type)."""
        from rclpy.parameter import Parameter

        for entry in parameters if not ignore_override else ():
            name = f"{namespace}.{entry[0]}" if namespace else entry[0]
            override = self._parameter_overrides.get(name)  # the command line's and params files' values
            descriptor = entry[2] if len(entry) > 2 else None
            if override is None or getattr(descriptor, "dynamic_typing", False):
                continue
            declared = entry[1] if len(entry) > 1 else None
            if isinstance(declared, Parameter.Type):  # declared by its type, without a default
                declared = 0.0 if declared == Parameter.Type.DOUBLE else None
            value = as_declared_type(declared, override.value)
            if value is not override.value:
                self._parameter_overrides[name] = Parameter(name, value=value)
        return super().declare_parameters(namespace, parameters, ignore_override)

    def _integers_as_doubles(self, parameters: list) -> list:
        """The pre-set callback: an integer set on a declared, statically typed double becomes that double."""
        from rclpy.parameter import Parameter

        def converted(parameter):
            if parameter.type_ != Parameter.Type.INTEGER or not self.has_parameter(parameter.name):
                return parameter
            descriptor = self.describe_parameter(parameter.name)
            if descriptor.dynamic_typing or descriptor.type != Parameter.Type.DOUBLE.value:
                return parameter
            return Parameter(parameter.name, value=float(parameter.value))

        return [converted(parameter) for parameter in parameters]
