{{/*
Naming helpers, after KubeRay's helm-chart/ray-cluster.
*/}}

{{/* Chart name, overridable. */}}
{{- define "farm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: "<release>-<chart>" unless the release already contains the chart name. 52 chars leave room for suffixes. */}}
{{- define "farm.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "farm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "farm.labels" -}}
helm.sh/chart: {{ include "farm.chart" . }}
{{ include "farm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the release's pods. */}}
{{- define "farm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "farm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select the gateway pods. */}}
{{- define "farm.gateway.selectorLabels" -}}
{{ include "farm.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "farm.gateway.fullname" -}}
{{- printf "%s-gateway" (include "farm.fullname" .) }}
{{- end }}

{{- define "farm.raycluster.fullname" -}}
{{- printf "%s-ray" (include "farm.fullname" .) }}
{{- end }}

{{/* KubeRay names the head Service "<raycluster>-head-svc". */}}
{{- define "farm.ray.headService" -}}
{{- printf "%s-head-svc" (include "farm.raycluster.fullname" .) }}
{{- end }}

{{/* The --ray-address the gateway uses. */}}
{{- define "farm.ray.address" -}}
{{- if .Values.gateway.rayAddress }}
{{- .Values.gateway.rayAddress }}
{{- else }}
{{- printf "ray://%s.%s.svc:10001" (include "farm.ray.headService" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "farm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "farm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "farm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "farm.configName" -}}
{{- printf "%s-config" (include "farm.fullname" .) }}
{{- end }}

{{- define "farm.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "farm.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}

{{- define "farm.apiKeysSecretKey" -}}
{{- if .Values.apiKeys.existingSecret }}{{ .Values.apiKeys.existingSecretKey }}{{ else }}api-keys{{ end }}
{{- end }}

{{- define "farm.weightsClaim" -}}
{{- default (printf "%s-weights" (include "farm.fullname" .)) .Values.weights.pvc.existingClaim }}
{{- end }}

{{- define "farm.artifactsClaim" -}}
{{- default (printf "%s-artifacts" (include "farm.fullname" .)) .Values.artifacts.pvc.existingClaim }}
{{- end }}

{{/* Volumes shared by the gateway and the Ray pods: weights (read-only), artifacts, farm config. . is a dict: root, ray (bool). */}}
{{- define "farm.volumes" -}}
{{- $ray := .ray }}
{{- with .root }}
{{- if or (not $ray) .Values.artifacts.mountInRayPods }}
- name: artifacts
  persistentVolumeClaim:
    claimName: {{ include "farm.artifactsClaim" . }}
{{- end }}
- name: config
  configMap:
    name: {{ include "farm.configName" . }}
{{- if .Values.weights.enabled }}
- name: weights
{{- if eq .Values.weights.type "hostPath" }}
  hostPath:
    path: {{ .Values.weights.hostPath.path }}
    type: Directory
{{- else }}
  persistentVolumeClaim:
    claimName: {{ include "farm.weightsClaim" . }}
    readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "farm.volumeMounts" -}}
{{- $ray := .ray }}
{{- with .root }}
{{- if or (not $ray) .Values.artifacts.mountInRayPods }}
- name: artifacts
  mountPath: {{ .Values.artifacts.mountPath }}
{{- end }}
- name: config
  mountPath: /etc/farm
  readOnly: true
{{- if .Values.weights.enabled }}
- name: weights
  mountPath: {{ .Values.weights.mountPath }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* A Ray pod template for the head or one worker group: . is a dict with root, group (values), component, isHead. */}}
{{- define "farm.ray.podTemplate" -}}
{{- $root := .root }}
{{- $group := .group -}}
metadata:
  labels:
    {{- include "farm.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  serviceAccountName: {{ include "farm.serviceAccountName" $root }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "farm.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- with $root.Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        - name: HF_HUB_OFFLINE
          value: "1"
      {{- if .isHead }}
      ports:
        - containerPort: 6379
          name: gcs
        - containerPort: 8265
          name: dashboard
        - containerPort: 10001
          name: client
        - containerPort: 8080
          name: metrics
      {{- else }}
      ports:
        - containerPort: 8080
          name: metrics
      {{- end }}
      resources:
        {{- toYaml $group.resources | nindent 8 }}
      volumeMounts:
        {{- include "farm.volumeMounts" (dict "root" $root "ray" true) | nindent 8 }}
        - name: ray-logs
          mountPath: /tmp/ray
  volumes:
    {{- include "farm.volumes" (dict "root" $root "ray" true) | nindent 4 }}
    - name: ray-logs
      emptyDir: {}
  {{- with $group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
