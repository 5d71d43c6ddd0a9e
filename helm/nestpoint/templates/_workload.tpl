{{/*
The pod template pieces shared by the API, the workers, the scheduler and the migrations.
*/}}

{{/* Pod-level settings: (dict "root" $ "values" .Values.api) */}}
{{- define "nestpoint.podCommon" -}}
{{- $root := .root }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      {{- with $root.Values.tmpVolume.medium }}
      medium: {{ . }}
      {{- end }}
      sizeLimit: {{ $root.Values.tmpVolume.sizeLimit }}
{{- end }}

{{/* Container-level settings every container shares. */}}
{{- define "nestpoint.containerCommon" -}}
image: {{ include "nestpoint.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}

{{/* OpenTelemetry's names of a component: (dict "root" $ "component" "api") */}}
{{- define "nestpoint.otelEnv" -}}
- name: OTEL_SERVICE_NAME
  value: nestpoint-{{ .component }}
{{- if .root.Values.config.tracing.enabled }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "service.namespace={{ .root.Release.Name }},service.version={{ include "nestpoint.imageTag" .root }},k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
{{- end }}
{{- end }}

{{/* Topology spread: the component's own, else a soft spread over nodes. */}}
{{- define "nestpoint.topologySpread" -}}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml .values.topologySpreadConstraints | nindent 2 }}
{{- else if .root.Values.spreadAcrossNodes }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "nestpoint.componentSelectorLabels" . | nindent 8 }}
{{- end }}
{{- end }}

{{/*
A Deployment of the API, the workers or the scheduler: (dict "root" $ "component" NAME).
*/}}
{{- define "nestpoint.deployment" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- $values := index $root.Values $component }}
{{- $metricsPort := int $root.Values.metrics.port }}
{{- $ctx := dict "root" $root "component" $component "values" $values }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "nestpoint.fullname" $root }}-{{ $component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "nestpoint.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if not (and $values.autoscaling $values.autoscaling.enabled) }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ $root.Values.revisionHistoryLimit }}
  selector:
    matchLabels:
      {{- include "nestpoint.componentSelectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      {{- if eq $component "api" }}
      # Never below the current capacity while rolling: a new pod is ready before an old one goes.
      maxUnavailable: 0
      maxSurge: 25%
      {{- else }}
      maxUnavailable: 1
      maxSurge: 1
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "nestpoint.componentSelectorLabels" $ctx | nindent 8 }}
        app.kubernetes.io/version: {{ include "nestpoint.imageTag" $root | trunc 63 | trimSuffix "-" | quote }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A change of settings rolls the pods (variables are read once, at start).
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- if not $root.Values.secrets.existingSecret }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- end }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "nestpoint.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      {{- include "nestpoint.podCommon" $ctx | trim | nindent 6 }}
      {{- with (include "nestpoint.topologySpread" $ctx | trim) }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: {{ $component }}
          {{- include "nestpoint.containerCommon" $root | nindent 10 }}
          {{- if eq $component "api" }}
          args: ["serve"]
          {{- else if eq $component "worker" }}
          args: ["worker", "--no-scheduler", "--threads", {{ $values.threads | int | toString | quote }}]
          {{- else }}
          args: ["scheduler"]
          {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "nestpoint.fullname" $root }}
            {{- with $root.Values.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            {{- include "nestpoint.secretEnv" $ctx | nindent 12 }}
            {{- if eq $component "api" }}
            - name: NESTPOINT_HOST
              value: "0.0.0.0"
            - name: NESTPOINT_PORT
              value: {{ $values.port | int | toString | quote }}
            - name: NESTPOINT_WORKERS
              value: "1"
            {{- end }}
            {{- include "nestpoint.otelEnv" $ctx | nindent 12 }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if eq $component "api" }}
          ports:
            - name: http
              containerPort: {{ $values.port }}
              protocol: TCP
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $values.probes.startup | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            {{- toYaml $values.probes.readiness | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            {{- toYaml $values.probes.liveness | nindent 12 }}
          {{- if gt (int $values.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $values.preStopSleepSeconds }}
          {{- end }}
          {{- else if and $root.Values.metrics.enabled (gt $metricsPort 0) }}
          ports:
            - name: metrics
              containerPort: {{ $metricsPort }}
              protocol: TCP
          # The process has no HTTP endpoint of its own: the metrics port answers while it runs.
          startupProbe:
            tcpSocket:
              port: metrics
            {{- toYaml $values.probes.startup | nindent 12 }}
          livenessProbe:
            tcpSocket:
              port: metrics
            {{- toYaml $values.probes.liveness | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
{{- end }}

{{/* A PodDisruptionBudget: (dict "root" $ "component" NAME). */}}
{{- define "nestpoint.pdb" -}}
{{- $values := index .root.Values .component }}
{{- if $values.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "nestpoint.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "nestpoint.componentLabels" . | nindent 4 }}
spec:
  {{- if not (eq (toString $values.pdb.minAvailable) "") }}
  minAvailable: {{ $values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $values.pdb.maxUnavailable }}
  {{- end }}
  # A pod that is not ready protects nothing: let a drain evict it.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "nestpoint.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* A HorizontalPodAutoscaler: (dict "root" $ "component" NAME). */}}
{{- define "nestpoint.hpa" -}}
{{- $values := index .root.Values .component }}
{{- $a := $values.autoscaling }}
{{- if $a.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "nestpoint.fullname" .root }}-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "nestpoint.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "nestpoint.fullname" .root }}-{{ .component }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- if $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $a.targetMemoryUtilizationPercentage }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
