{{/*
Names and labels.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "nestpoint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else "<release>-<chart>" (just the
release name when it already contains the chart's name). Kept to 52 characters so that
suffixes such as "-scheduler-metrics" stay within 63.
*/}}
{{- define "nestpoint.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "nestpoint-0.1.0", for the helm.sh/chart label. */}}
{{- define "nestpoint.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "nestpoint.labels" -}}
helm.sh/chart: {{ include "nestpoint.chart" . }}
{{ include "nestpoint.selectorLabels" . }}
app.kubernetes.io/version: {{ include "nestpoint.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nestpoint
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels that select the release's pods. */}}
{{- define "nestpoint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nestpoint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's resources: (dict "root" $ "component" "api"). */}}
{{- define "nestpoint.componentLabels" -}}
{{ include "nestpoint.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component's pods: (dict "root" $ "component" "api"). */}}
{{- define "nestpoint.componentSelectorLabels" -}}
{{ include "nestpoint.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The image.
*/}}

{{- define "nestpoint.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "nestpoint.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "nestpoint.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Service accounts.
*/}}

{{- define "nestpoint.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nestpoint.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nestpoint.migrationsServiceAccountName" -}}
{{- if .Values.migrations.serviceAccount.create }}
{{- default (printf "%s-migrations" (include "nestpoint.fullname" .)) .Values.migrations.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.migrations.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secrets. Without secrets.existingSecret the chart makes two: "<fullname>" for the API,
workers and scheduler (a release resource), and "<fullname>-migrations" for the migration
Job (a hook resource made just before it, as the release's resources do not exist yet when
a pre-install hook runs). Both hold keys named after the variables they set.
*/}}

{{/* The Secret the API, workers and scheduler read. */}}
{{- define "nestpoint.secretName" -}}
{{- default (include "nestpoint.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Secret the migration Job reads. */}}
{{- define "nestpoint.migrationsSecretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- printf "%s-migrations" (include "nestpoint.fullname" .) }}
{{- end }}
{{- end }}

{{/* The Secret holding NESTPOINT_MIGRATION_DATABASE_URL. */}}
{{- define "nestpoint.migrationUrlSecretName" -}}
{{- if and .Values.secrets.existingSecret .Values.secrets.existingMigrationSecret }}
{{- .Values.secrets.existingMigrationSecret }}
{{- else }}
{{- include "nestpoint.migrationsSecretName" . }}
{{- end }}
{{- end }}

{{/*
Checks the values that the schema cannot: fails the render with a message naming the value.
*/}}
{{- define "nestpoint.validate" -}}
{{- $s := .Values.secrets }}
{{- $given := list }}
{{- range $key := list "databaseUrl" "migrationDatabaseUrl" "redisUrl" "piiKeys" "piiHashKey" "cursorKey" "rateLimitStorageUrl" "stripeSecretKey" "stripeWebhookSecret" "schedulerDatabaseUrl" }}
{{- if index $s $key }}
{{- $given = append $given $key }}
{{- end }}
{{- end }}
{{- if $s.existingSecret }}
{{- if $given }}
{{- fail (printf "secrets.existingSecret is set: the chart makes no Secret, so leave secrets.%s empty (put them in the Secret %q instead)" (join ", secrets." $given) $s.existingSecret) }}
{{- end }}
{{- else }}
{{- if $s.existingMigrationSecret }}
{{- fail "secrets.existingMigrationSecret needs secrets.existingSecret (without it the chart makes both Secrets)" }}
{{- end }}
{{- $missing := list }}
{{- range $key := list "databaseUrl" "migrationDatabaseUrl" "redisUrl" "piiKeys" "piiHashKey" }}
{{- if not (index $s $key) }}
{{- $missing = append $missing (printf "secrets.%s" $key) }}
{{- end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "missing %s: set them (the chart then makes the Secret), or name a Secret you manage in secrets.existingSecret (see the chart's README)" (join ", " $missing)) }}
{{- else if eq $s.databaseUrl $s.migrationDatabaseUrl }}
{{- fail "secrets.databaseUrl and secrets.migrationDatabaseUrl are the same: the application must connect as a role that owns no table (row-level security), the migrations as the owner" }}
{{- end }}
{{- /* Formats. The messages never repeat a value: it is a secret. */}}
{{- range $key := list "databaseUrl" "migrationDatabaseUrl" "schedulerDatabaseUrl" }}
{{- if and (index $s $key) (not (hasPrefix "postgresql+asyncpg://" (index $s $key))) }}
{{- fail (printf "secrets.%s must be a PostgreSQL URL for asyncpg: postgresql+asyncpg://ROLE:PASSWORD@HOST:5432/DATABASE" $key) }}
{{- end }}
{{- end }}
{{- if and $s.redisUrl (not (regexMatch "^(redis|rediss|unix)://" $s.redisUrl)) }}
{{- fail "secrets.redisUrl must be a redis://, rediss:// or unix:// URL" }}
{{- end }}
{{- $b64key := "[A-Za-z0-9+/]{43}=" }}
{{- if and $s.piiKeys (not (regexMatch (printf "^[A-Za-z0-9_.-]{1,32}:%s( *, *[A-Za-z0-9_.-]{1,32}:%s)*$" $b64key $b64key) $s.piiKeys)) }}
{{- fail "secrets.piiKeys must be <key id>:<base64 of 32 bytes>[,<key id>:<base64 of 32 bytes>...], as `nestpoint members new-key` prints it" }}
{{- end }}
{{- if and $s.piiHashKey (not (regexMatch (printf "^%s$" $b64key) $s.piiHashKey)) }}
{{- fail "secrets.piiHashKey must be the base64 of 32 bytes, as `nestpoint members new-key` prints it" }}
{{- end }}
{{- end }}
{{- if and .Values.api.autoscaling.enabled (gt (int .Values.api.autoscaling.minReplicas) (int .Values.api.autoscaling.maxReplicas)) }}
{{- fail "api.autoscaling.minReplicas is above api.autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.worker.autoscaling.enabled (gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas)) }}
{{- fail "worker.autoscaling.minReplicas is above worker.autoscaling.maxReplicas" }}
{{- end }}
{{- $chartSets := list "NESTPOINT_DATABASE_URL" "NESTPOINT_MIGRATION_DATABASE_URL" "NESTPOINT_REDIS_URL" "NESTPOINT_PII_KEYS" "NESTPOINT_PII_HASH_KEY" "NESTPOINT_CURSOR_KEY" "NESTPOINT_RATE_LIMIT_STORAGE_URL" "NESTPOINT_STRIPE_SECRET_KEY" "NESTPOINT_STRIPE_WEBHOOK_SECRET" "NESTPOINT_SCHEDULER_DATABASE_URL" "NESTPOINT_HOST" "NESTPOINT_PORT" "NESTPOINT_WORKERS" "OTEL_SERVICE_NAME" }}
{{- $chartSets = concat $chartSets (keys (include "nestpoint.chartConfigData" . | fromYaml)) }}
{{- range $name, $value := .Values.extraEnv }}
{{- if has $name $chartSets }}
{{- fail (printf "extraEnv.%s is set by the chart: use its own value (config.*, secrets.*, api.port...), and never extraEnv for a secret" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.api.port)) }}
{{- fail "metrics.port must differ from api.port" }}
{{- end }}
{{- end }}

{{/*
Settings.
*/}}

{{/*
The non-secret settings, as a YAML map of variable -> string: the ConfigMap's data, and the
migration Job's environment (the ConfigMap does not exist yet when a pre-install hook runs).
*/}}
{{- define "nestpoint.configData" -}}
{{ include "nestpoint.chartConfigData" . }}
{{- range $name, $value := .Values.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The settings the chart itself sets (configData without extraEnv). */}}
{{- define "nestpoint.chartConfigData" -}}
{{- $c := .Values.config -}}
NESTPOINT_LOG_LEVEL: {{ $c.logLevel | quote }}
NESTPOINT_LOG_JSON: {{ $c.logJson | toString | quote }}
NESTPOINT_RATE_LIMIT: {{ $c.rateLimit | quote }}
NESTPOINT_TRACING_ENABLED: {{ $c.tracing.enabled | toString | quote }}
{{- if $c.tracing.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ $c.tracing.otlpEndpoint | quote }}
{{- end }}
NESTPOINT_METRICS_ENABLED: {{ .Values.metrics.enabled | toString | quote }}
NESTPOINT_METRICS_PORT: {{ .Values.metrics.port | int | toString | quote }}
NESTPOINT_PLUGINS_ALLOW: {{ $c.pluginsAllow | toJson | quote }}
NESTPOINT_PLUGINS_BLOCK: {{ $c.pluginsBlock | toJson | quote }}
NESTPOINT_APP_ROLE: {{ $c.appRole | quote }}
NESTPOINT_SCHEDULER_LOCK_ID: {{ $c.schedulerLockId | int64 | toString | quote }}
{{- if $c.databasePoolSize }}
NESTPOINT_DATABASE_POOL_SIZE: {{ $c.databasePoolSize | int | toString | quote }}
{{- end }}
{{- end }}

{{/*
One env entry read from a Secret: (dict "name" VAR "secret" NAME "key" KEY "optional" BOOL).
*/}}
{{- define "nestpoint.secretEnvVar" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key | default .name }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/*
The secret settings of the API, workers and scheduler: (dict "root" $ "component" "api").
With the chart's own Secret only the keys it holds are referenced; with an existing Secret
the optional keys are referenced as optional.
*/}}
{{- define "nestpoint.secretEnv" -}}
{{- $root := .root }}
{{- $s := $root.Values.secrets }}
{{- $secret := include "nestpoint.secretName" $root }}
{{- $existing := not (empty $s.existingSecret) }}
{{- $databaseKey := "NESTPOINT_DATABASE_URL" }}
{{- if eq .component "scheduler" }}
{{- if $root.Values.scheduler.databaseUrlSecretKey }}
{{- $databaseKey = $root.Values.scheduler.databaseUrlSecretKey }}
{{- else if $s.schedulerDatabaseUrl }}
{{- $databaseKey = "NESTPOINT_SCHEDULER_DATABASE_URL" }}
{{- end }}
{{- end }}
{{- include "nestpoint.secretEnvVar" (dict "name" "NESTPOINT_DATABASE_URL" "secret" $secret "key" $databaseKey) }}
{{- range $name := list "NESTPOINT_REDIS_URL" "NESTPOINT_PII_KEYS" "NESTPOINT_PII_HASH_KEY" }}
{{ include "nestpoint.secretEnvVar" (dict "name" $name "secret" $secret) }}
{{- end }}
{{- range $name, $value := dict "NESTPOINT_CURSOR_KEY" $s.cursorKey "NESTPOINT_RATE_LIMIT_STORAGE_URL" $s.rateLimitStorageUrl "NESTPOINT_STRIPE_SECRET_KEY" $s.stripeSecretKey "NESTPOINT_STRIPE_WEBHOOK_SECRET" $s.stripeWebhookSecret }}
{{- if or $existing $value }}
{{ include "nestpoint.secretEnvVar" (dict "name" $name "secret" $secret "optional" $existing) }}
{{- end }}
{{- end }}
{{- end }}
