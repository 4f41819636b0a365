"""An independent, deliberately Go-shaped reference model of the Kubernetes HPA controller.

This is a literal transliteration of ``pkg/controller/podautoscaler/horizontal.go`` and
``replica_calculator.go`` (autoscaling/v2, upstream master as of v1.35), restricted to what the
differential tests need:

* ``spec.behavior`` is always set, so ``normalizeDesiredReplicasWithBehaviors`` is used, never the
  legacy ``normalizeDesiredReplicas``;
* External metrics only, with ``Value`` or ``AverageValue`` targets, one series per metric;
* feature gates: ``HPAScaleToZero`` OFF, ``HPAConfigurableTolerance`` ON;
* one fake clock: every ``time.Now()`` of the Go code returns the tick's ``now``;
* the scale update always succeeds (so ``storeScaleEvent`` runs whenever ``rescale`` is true).

It intentionally does NOT share code with ``autoscaler.core``: the point is independence. It keeps the
controller's mutable in-memory state exactly as Go does (slices of slots that get reused), so slot-reuse
subtleties are reproduced rather than re-derived.

Float semantics follow Go's float64 (Python floats are IEEE doubles); ``x/0`` gives ``±Inf`` / ``NaN``
instead of raising, and ``int32(f)`` follows amd64 for NaN / out-of-range values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)
MAX_INT64 = 2**63 - 1

# enum strings as in autoscalingv2
PODS_SCALING_POLICY = "Pods"
PERCENT_SCALING_POLICY = "Percent"
MAX_CHANGE_POLICY_SELECT = "Max"
MIN_CHANGE_POLICY_SELECT = "Min"
DISABLED_POLICY_SELECT = "Disabled"

TARGET_VALUE = "Value"
TARGET_AVERAGE_VALUE = "AverageValue"


# --------------------------------------------------------------------------------------------------
# Go numeric helpers
# --------------------------------------------------------------------------------------------------


def go_fdiv(a: float, b: float) -> float:
    """Go float64 division: x/0 = ±Inf, 0/0 = NaN (IEEE 754), never raises."""
    a = float(a)
    b = float(b)
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        # sign of the result: sign(a) * sign(b) (b may be -0.0)
        neg = (a < 0) != (math.copysign(1.0, b) < 0)
        return -math.inf if neg else math.inf
    return a / b


def go_int32_of_float(f: float) -> int:
    """Go ``int32(f)``: truncation toward zero; NaN/±Inf/out of range is 0x80000000 on amd64."""
    if math.isnan(f) or math.isinf(f):
        return MIN_INT32
    t = int(f)  # truncates toward zero
    if t < MIN_INT32 or t > MAX_INT32:
        return MIN_INT32
    return t


def go_ceil(f: float) -> float:
    """Go ``math.Ceil``: returns a float64; ±Inf and NaN pass through."""
    if math.isnan(f) or math.isinf(f):
        return f
    return float(math.ceil(f))


def go_int32(x: int) -> int:
    """Wrap-around int32 arithmetic."""
    x &= 0xFFFFFFFF
    return x - 2**32 if x >= 2**31 else x


def milli_value(v: float) -> int:
    """The metric value as the HPA reads it: ``Quantity.MilliValue()`` (rounds up sub-milli fractions).

    The contract of the system under test: ``milli = ceil(round(v * 1000, 6))``.
    """
    return math.ceil(round(v * 1000, 6))


# --------------------------------------------------------------------------------------------------
# Spec types (Go-shaped)
# --------------------------------------------------------------------------------------------------


@dataclass
class HPAScalingPolicy:
    type: str  # "Pods" | "Percent"
    value: int
    period_seconds: int


@dataclass
class HPAScalingRules:
    stabilization_window_seconds: int
    select_policy: str  # "Max" | "Min" | "Disabled"
    policies: list[HPAScalingPolicy]
    tolerance: float | None = None  # nil -> controller flag (0.1)


@dataclass
class HorizontalPodAutoscalerBehavior:
    scale_up: HPAScalingRules
    scale_down: HPAScalingRules


@dataclass
class ExternalMetricSpec:
    name: str
    target_type: str  # "Value" | "AverageValue"
    target_milli: int  # Target.Value.MilliValue() / Target.AverageValue.MilliValue()


@dataclass
class HPASpec:
    min_replicas: int
    max_replicas: int
    metrics: list[ExternalMetricSpec]
    behavior: HorizontalPodAutoscalerBehavior


# --------------------------------------------------------------------------------------------------
# Controller state (Go-shaped)
# --------------------------------------------------------------------------------------------------


@dataclass
class TimestampedScaleEvent:
    replica_change: int  # absolute value, non-negative
    timestamp: float
    outdated: bool = False


class MetricError(Exception):
    pass


@dataclass
class Tolerances:
    scale_down: float
    scale_up: float

    def is_within(self, usage_ratio: float) -> bool:
        return (1.0 - self.scale_down) <= usage_ratio and usage_ratio <= (1.0 + self.scale_up)


@dataclass
class ReferenceHPA:
    """One HPA object, plus the controller's per-key memory for it."""

    spec: HPASpec
    controller_tolerance: float = 0.1
    downscale_stabilisation_window: int = 300
    # a.recommendations[key]: None means "nil" (never seeded)
    recommendations: list[list[float]] | None = None  # [[recommendation, timestamp], ...]
    scale_up_events: list[TimestampedScaleEvent] = field(default_factory=list)
    scale_down_events: list[TimestampedScaleEvent] = field(default_factory=list)
    # the fake clock: every time.Now() returns this
    _now: float = 0.0
    # last reconcile's trace, for debugging failing differential tests
    last_trace: dict[str, object] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------------------
    def time_now(self) -> float:
        return self._now

    # ---------------------------------------------------------------------------------------------
    # reconcileAutoscaler
    # ---------------------------------------------------------------------------------------------
    def reconcile(
        self,
        now: float,
        spec_replicas: int,
        status_replicas: int,
        ready_pods: int,
        metric_values: dict[str, float | None],
    ) -> int:
        """One sync of the HPA at ``now``. Returns the desired replicas (the scale after this sync)."""
        self._now = now
        self.last_trace = {}
        hpa = self.spec

        current_replicas = spec_replicas  # scale.Spec.Replicas
        self.record_initial_recommendation(current_replicas)

        desired_replicas = 0
        min_replicas = hpa.min_replicas  # never nil here
        rescale = True

        # HPAScaleToZero gate OFF: scaledToZeroCondition = false, canScaleFromZero = false
        scaled_to_zero_condition = False
        can_scale_from_zero = False
        needs_metric_computation = True

        if current_replicas == 0:
            needs_metric_computation, should_disable = self.should_compute_metrics_for_zero_replicas(
                min_replicas, scaled_to_zero_condition, can_scale_from_zero
            )
            if should_disable:
                desired_replicas = 0
                rescale = False
                self.last_trace["branch"] = "ScalingDisabled"
        elif current_replicas > hpa.max_replicas:
            desired_replicas = hpa.max_replicas
            needs_metric_computation = False
            self.last_trace["branch"] = "above max"
        elif current_replicas < min_replicas:
            desired_replicas = min_replicas
            needs_metric_computation = False
            self.last_trace["branch"] = "below min"

        if needs_metric_computation:
            metric_desired_replicas, err = self.compute_replicas_for_metrics(
                spec_replicas, status_replicas, ready_pods, metric_values
            )
            self.last_trace["metric_desired"] = metric_desired_replicas
            if err is not None and metric_desired_replicas == -1:
                # status only, no recommendation recorded, no scale
                self.last_trace["branch"] = "FailedComputeMetricsReplicas"
                return current_replicas
            if metric_desired_replicas > desired_replicas:
                desired_replicas = metric_desired_replicas
            desired_replicas = self.normalize_desired_replicas_with_behaviors(
                current_replicas, desired_replicas, min_replicas
            )
            # Ensure we scale to at least minReplicas when scaling from zero (gate off: never true here)
            if (
                current_replicas == 0
                and min_replicas != 0
                and scaled_to_zero_condition
                and desired_replicas < min_replicas
            ):
                desired_replicas = min_replicas
            rescale = desired_replicas != current_replicas

        if rescale:
            # the update always succeeds in this model
            self.store_scale_event(current_replicas, desired_replicas)
        else:
            desired_replicas = current_replicas
        return desired_replicas

    def record_initial_recommendation(self, current_replicas: int) -> None:
        if self.recommendations is None:
            self.recommendations = [[current_replicas, self.time_now()]]

    @staticmethod
    def should_compute_metrics_for_zero_replicas(
        min_replicas: int, scaled_to_zero_condition: bool, can_scale_from_zero: bool
    ) -> tuple[bool, bool]:
        if (min_replicas != 0 and scaled_to_zero_condition) or can_scale_from_zero:
            return True, False
        return False, True

    # ---------------------------------------------------------------------------------------------
    # computeReplicasForMetrics
    # ---------------------------------------------------------------------------------------------
    def compute_replicas_for_metrics(
        self,
        spec_replicas: int,
        status_replicas: int,
        ready_pods: int,
        metric_values: dict[str, float | None],
    ) -> tuple[int, Exception | None]:
        replicas = 0
        invalid_metrics_count = 0
        invalid_metric_error: Exception | None = None
        proposals: dict[str, int | None] = {}

        for metric_spec in self.spec.metrics:
            try:
                replica_count_proposal = self.compute_status_for_external_metric(
                    spec_replicas, status_replicas, ready_pods, metric_spec, metric_values.get(metric_spec.name)
                )
            except MetricError as err:
                proposals[metric_spec.name] = None
                if invalid_metrics_count <= 0:
                    invalid_metric_error = err
                invalid_metrics_count += 1
                continue
            proposals[metric_spec.name] = replica_count_proposal
            if replicas == 0 or replica_count_proposal > replicas:
                replicas = replica_count_proposal
        self.last_trace["proposals"] = proposals

        if invalid_metric_error is not None:
            invalid_metric_error = MetricError(
                f"invalid metrics ({invalid_metrics_count} invalid out of {len(self.spec.metrics)}), "
                f"first error is: {invalid_metric_error}"
            )

        if invalid_metrics_count >= len(self.spec.metrics) or (invalid_metrics_count > 0 and replicas < spec_replicas):
            return -1, invalid_metric_error
        return replicas, invalid_metric_error

    def tolerances_for_hpa(self) -> Tolerances:
        t = Tolerances(self.controller_tolerance, self.controller_tolerance)
        behavior = self.spec.behavior
        if behavior.scale_down is not None and behavior.scale_down.tolerance is not None:
            t.scale_down = behavior.scale_down.tolerance
        if behavior.scale_up is not None and behavior.scale_up.tolerance is not None:
            t.scale_up = behavior.scale_up.tolerance
        return t

    def compute_status_for_external_metric(
        self,
        spec_replicas: int,
        status_replicas: int,
        ready_pods: int,
        metric_spec: ExternalMetricSpec,
        value: float | None,
    ) -> int:
        tolerances = self.tolerances_for_hpa()
        if metric_spec.target_type == TARGET_AVERAGE_VALUE:
            return self.get_external_per_pod_metric_replicas(
                status_replicas, metric_spec.target_milli, metric_spec.name, tolerances, value
            )
        if metric_spec.target_type == TARGET_VALUE:
            return self.get_external_metric_replicas(
                spec_replicas, metric_spec.target_milli, metric_spec.name, tolerances, value, ready_pods
            )
        raise MetricError("invalid external metric source: neither a value target nor an average value target was set")

    # ---------------------------------------------------------------------------------------------
    # replica_calculator.go
    # ---------------------------------------------------------------------------------------------
    @staticmethod
    def get_external_metric(metric_name: str, value: float | None) -> list[int]:
        if value is None:
            raise MetricError("no metrics returned from external metrics API")
        return [milli_value(value)]

    def get_external_metric_replicas(
        self,
        current_replicas: int,
        target_usage: int,
        metric_name: str,
        tolerances: Tolerances,
        value: float | None,
        ready_pods: int,
    ) -> int:
        metrics = self.get_external_metric(metric_name, value)
        usage = 0
        for val in metrics:
            if val > 0 and usage > MAX_INT64 - val:
                usage = MAX_INT64
                break
            usage = usage + val
        usage_ratio = go_fdiv(float(usage), float(target_usage))
        return self.get_usage_ratio_replica_count(current_replicas, usage_ratio, tolerances, ready_pods)

    def get_external_per_pod_metric_replicas(
        self,
        status_replicas: int,
        target_usage_per_pod: int,
        metric_name: str,
        tolerances: Tolerances,
        value: float | None,
    ) -> int:
        metrics = self.get_external_metric(metric_name, value)
        usage = 0
        for val in metrics:
            usage = usage + val
            if usage > MAX_INT64 or usage < 0:  # Go: the int64 sum wrapped negative
                usage = MAX_INT64
                break
        replica_count = status_replicas
        usage_ratio = go_fdiv(float(usage), float(target_usage_per_pod) * float(replica_count))
        if not tolerances.is_within(usage_ratio):
            replica_count_result = go_ceil(go_fdiv(float(usage), float(target_usage_per_pod)))
            if replica_count_result > float(MAX_INT32):
                replica_count = MAX_INT32
            else:
                replica_count = go_int32_of_float(replica_count_result)
        return replica_count

    def get_usage_ratio_replica_count(
        self, current_replicas: int, usage_ratio: float, tolerances: Tolerances, ready_pods: int
    ) -> int:
        if current_replicas != 0:
            if tolerances.is_within(usage_ratio):
                return current_replicas
            ready_pod_count = ready_pods  # getReadyPodsCount: Running && Ready
            replica_count_float = usage_ratio * float(ready_pod_count)
            if replica_count_float > MAX_INT32:
                replica_count = MAX_INT32
            else:
                replica_count = go_int32_of_float(go_ceil(replica_count_float))
        else:
            replica_count = go_int32_of_float(go_ceil(usage_ratio))
        return replica_count

    # ---------------------------------------------------------------------------------------------
    # normalizeDesiredReplicasWithBehaviors
    # ---------------------------------------------------------------------------------------------
    def normalize_desired_replicas_with_behaviors(
        self, current_replicas: int, prenormalized_desired_replicas: int, min_replicas: int
    ) -> int:
        # maybeInitScaleDownStabilizationWindow: our spec always carries an explicit window
        arg = {
            "ScaleUpBehavior": self.spec.behavior.scale_up,
            "ScaleDownBehavior": self.spec.behavior.scale_down,
            "MinReplicas": min_replicas,
            "MaxReplicas": self.spec.max_replicas,
            "CurrentReplicas": current_replicas,
            "DesiredReplicas": prenormalized_desired_replicas,
        }
        stabilized_recommendation = self.stabilize_recommendation_with_behaviors(arg)
        self.last_trace["stabilized"] = stabilized_recommendation
        arg["DesiredReplicas"] = stabilized_recommendation
        desired_replicas = self.convert_desired_replicas_with_behavior_rate(arg)
        self.last_trace["rate_limited"] = desired_replicas
        return desired_replicas

    def stabilize_recommendation_with_behaviors(self, args: dict) -> int:
        now = self.time_now()

        found_old_sample = False
        old_sample_index = 0

        up_recommendation = args["DesiredReplicas"]
        up_delay_seconds = args["ScaleUpBehavior"].stabilization_window_seconds
        up_cutoff = now - up_delay_seconds

        down_recommendation = args["DesiredReplicas"]
        down_delay_seconds = args["ScaleDownBehavior"].stabilization_window_seconds
        down_cutoff = now - down_delay_seconds

        assert self.recommendations is not None
        for i, rec in enumerate(self.recommendations):
            rec_value, rec_ts = rec
            if rec_ts > up_cutoff:  # rec.timestamp.After(upCutoff)
                up_recommendation = min(rec_value, up_recommendation)
            if rec_ts > down_cutoff:  # rec.timestamp.After(downCutoff)
                down_recommendation = max(rec_value, down_recommendation)
            if rec_ts < up_cutoff and rec_ts < down_cutoff:  # Before && Before
                found_old_sample = True
                old_sample_index = i

        recommendation = args["CurrentReplicas"]
        if recommendation < up_recommendation:
            recommendation = up_recommendation
        if recommendation > down_recommendation:
            recommendation = down_recommendation

        if found_old_sample:
            self.recommendations[old_sample_index] = [args["DesiredReplicas"], self.time_now()]
        else:
            self.recommendations.append([args["DesiredReplicas"], self.time_now()])
        return recommendation

    def convert_desired_replicas_with_behavior_rate(self, args: dict) -> int:
        if args["DesiredReplicas"] > args["CurrentReplicas"]:
            scale_up_limit = calculate_scale_up_limit_with_scaling_rules(
                args["CurrentReplicas"],
                self.scale_up_events,
                self.scale_down_events,
                args["ScaleUpBehavior"],
                self.time_now,
            )
            if scale_up_limit < args["CurrentReplicas"]:
                scale_up_limit = args["CurrentReplicas"]
            maximum_allowed_replicas = args["MaxReplicas"]
            if maximum_allowed_replicas > scale_up_limit:
                maximum_allowed_replicas = scale_up_limit
            if args["DesiredReplicas"] > maximum_allowed_replicas:
                return maximum_allowed_replicas
        elif args["DesiredReplicas"] < args["CurrentReplicas"]:
            scale_down_limit = calculate_scale_down_limit_with_behaviors(
                args["CurrentReplicas"],
                self.scale_up_events,
                self.scale_down_events,
                args["ScaleDownBehavior"],
                self.time_now,
            )
            if scale_down_limit > args["CurrentReplicas"]:
                scale_down_limit = args["CurrentReplicas"]
            minimum_allowed_replicas = args["MinReplicas"]
            if minimum_allowed_replicas < scale_down_limit:
                minimum_allowed_replicas = scale_down_limit
            if args["DesiredReplicas"] < minimum_allowed_replicas:
                return minimum_allowed_replicas
        return args["DesiredReplicas"]

    # ---------------------------------------------------------------------------------------------
    # storeScaleEvent
    # ---------------------------------------------------------------------------------------------
    def store_scale_event(self, prev_replicas: int, new_replicas: int) -> None:
        behavior = self.spec.behavior
        old_sample_index = 0
        found_old_sample = False
        if new_replicas > prev_replicas:
            longest_policy_period = get_longest_policy_period(behavior.scale_up)
            mark_scale_events_outdated(self.scale_up_events, longest_policy_period, self.time_now)
            replica_change = go_int32(new_replicas - prev_replicas)
            for i, event in enumerate(self.scale_up_events):
                if event.outdated:
                    found_old_sample = True
                    old_sample_index = i
            new_event = TimestampedScaleEvent(replica_change, self.time_now(), False)
            if found_old_sample:
                self.scale_up_events[old_sample_index] = new_event
            else:
                self.scale_up_events.append(new_event)
        else:
            longest_policy_period = get_longest_policy_period(behavior.scale_down)
            mark_scale_events_outdated(self.scale_down_events, longest_policy_period, self.time_now)
            replica_change = go_int32(prev_replicas - new_replicas)
            for i, event in enumerate(self.scale_down_events):
                if event.outdated:
                    found_old_sample = True
                    old_sample_index = i
            new_event = TimestampedScaleEvent(replica_change, self.time_now(), False)
            if found_old_sample:
                self.scale_down_events[old_sample_index] = new_event
            else:
                self.scale_down_events.append(new_event)


# --------------------------------------------------------------------------------------------------
# package-level functions of horizontal.go
# --------------------------------------------------------------------------------------------------


def get_replicas_change_per_period(period_seconds: int, scale_events: list[TimestampedScaleEvent], time_now) -> int:
    cutoff = time_now() - period_seconds
    replicas = 0
    for rec in scale_events:  # the outdated flag is ignored here
        if rec.timestamp > cutoff:  # rec.timestamp.After(cutoff)
            replicas = go_int32(replicas + rec.replica_change)
    return replicas


def get_longest_policy_period(scaling_rules: HPAScalingRules) -> int:
    longest_policy_period = 0
    for policy in scaling_rules.policies:
        if policy.period_seconds > longest_policy_period:
            longest_policy_period = policy.period_seconds
    return longest_policy_period


def calculate_scale_up_limit_with_scaling_rules(
    current_replicas: int,
    scale_up_events: list[TimestampedScaleEvent],
    scale_down_events: list[TimestampedScaleEvent],
    scaling_rules: HPAScalingRules,
    time_now,
) -> int:
    proposed = 0
    if scaling_rules.select_policy == DISABLED_POLICY_SELECT:
        return current_replicas
    elif scaling_rules.select_policy == MIN_CHANGE_POLICY_SELECT:
        result = MAX_INT32
        select_policy_fn = min
    else:
        result = MIN_INT32
        select_policy_fn = max
    for policy in scaling_rules.policies:
        replicas_added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, time_now)
        replicas_deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, time_now)
        period_start_replicas = go_int32(current_replicas - replicas_added + replicas_deleted)
        if policy.type == PODS_SCALING_POLICY:
            proposed = go_int32(period_start_replicas + policy.value)
        elif policy.type == PERCENT_SCALING_POLICY:
            proposed = go_int32_of_float(go_ceil(float(period_start_replicas) * (1 + float(policy.value) / 100)))
        result = select_policy_fn(result, proposed)
    return result


def calculate_scale_down_limit_with_behaviors(
    current_replicas: int,
    scale_up_events: list[TimestampedScaleEvent],
    scale_down_events: list[TimestampedScaleEvent],
    scaling_rules: HPAScalingRules,
    time_now,
) -> int:
    proposed = 0
    if scaling_rules.select_policy == DISABLED_POLICY_SELECT:
        return current_replicas
    elif scaling_rules.select_policy == MIN_CHANGE_POLICY_SELECT:
        result = MIN_INT32
        select_policy_fn = max
    else:
        result = MAX_INT32
        select_policy_fn = min
    for policy in scaling_rules.policies:
        replicas_added = get_replicas_change_per_period(policy.period_seconds, scale_up_events, time_now)
        replicas_deleted = get_replicas_change_per_period(policy.period_seconds, scale_down_events, time_now)
        period_start_replicas = go_int32(current_replicas - replicas_added + replicas_deleted)
        if policy.type == PODS_SCALING_POLICY:
            proposed = go_int32(period_start_replicas - policy.value)
        elif policy.type == PERCENT_SCALING_POLICY:
            proposed = go_int32_of_float(float(period_start_replicas) * (1 - float(policy.value) / 100))
        result = select_policy_fn(result, proposed)
    return result


def mark_scale_events_outdated(scale_events: list[TimestampedScaleEvent], longest_policy_period: int, time_now) -> None:
    cutoff = time_now() - longest_policy_period
    for event in scale_events:
        if event.timestamp < cutoff:  # event.timestamp.Before(cutoff)
            event.outdated = True
