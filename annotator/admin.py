"""Django admin: every model browsable; datasets get a 'extract patches' action, jobs a 'cancel' action."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .errors import ApplicationError
from .models import (
    AnnotationChange,
    Concept,
    Dataset,
    Finding,
    FractureDescriptor,
    Image,
    Job,
    Patch,
    TrainedModel,
    Unit,
    UnitAnnotation,
    UnitConsensus,
)
from .services.job_state import job_cancel
from .services.jobs import job_create


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "source", "created_at"]
    search_fields = ["name"]
    actions = ["extract_patches"]

    @admin.action(description="Extract patches (start a job)")
    def extract_patches(self, request: HttpRequest, queryset: QuerySet[Dataset]) -> None:
        for dataset in queryset:
            job = job_create(kind=Job.Kind.EXTRACT_PATCHES, dataset=dataset, created_by=request.user)
            self.message_user(request, f"Queued job #{job.pk} for {dataset.name}.", messages.SUCCESS)


class FindingInline(admin.TabularInline):
    model = Finding
    extra = 0
    fields = ["pathology", "lesion_type", "area", "bbox", "mask"]
    readonly_fields = ["area", "bbox"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["source_name", "dataset", "patient_id", "view", "laterality", "split", "label"]
    list_filter = ["dataset", "split", "label", "view"]
    search_fields = ["source_name", "patient_id"]
    inlines = [FindingInline]


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "pathology", "lesion_type", "area"]
    list_filter = ["pathology", "lesion_type"]
    filter_horizontal = ["concepts"]


@admin.register(Concept)
class ConceptAdmin(admin.ModelAdmin):
    list_display = ["code", "category_label", "term", "association"]
    list_filter = ["category"]
    search_fields = ["code", "term"]


@admin.register(Patch)
class PatchAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "x0", "y0", "x1", "y1", "label", "tissue_fraction"]
    list_filter = ["label"]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "dataset", "progress", "message", "created_by", "created_at"]
    list_filter = ["kind", "status"]
    readonly_fields = ["celery_id", "worker", "heartbeat_at", "started_at", "finished_at", "error", "result"]
    actions = ["cancel_jobs"]

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        for job in queryset:
            try:
                job_cancel(job=job)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.WARNING)

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A job added in the admin goes through the service, so it is enqueued like any other.
        created = job_create(kind=obj.kind, params=obj.params, dataset=obj.dataset, created_by=request.user)
        obj.pk = created.pk


@admin.register(UnitAnnotation)
class UnitAnnotationAdmin(admin.ModelAdmin):
    list_display = ["unit", "expert", "recognizable", "confidence", "version", "updated_at"]
    list_filter = ["recognizable", "expert"]
    readonly_fields = ["version", "created_at", "updated_at"]


@admin.register(UnitConsensus)
class UnitConsensusAdmin(admin.ModelAdmin):
    list_display = ["unit", "recognizable", "concept", "association", "set_by", "updated_at"]
    readonly_fields = ["version", "updated_at"]


@admin.register(FractureDescriptor)
class FractureDescriptorAdmin(admin.ModelAdmin):
    """Browse only: a label changes through the labelling page or API, which keep its version and history."""

    list_display = ["image", "expert", "fracture", "displacement", "location", "version", "updated_at"]
    list_filter = ["fracture", "displacement", "location", "expert"]
    readonly_fields = ["sentence", "version", "created_at", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AnnotationChange)
class AnnotationChangeAdmin(admin.ModelAdmin):
    """The history is evidence: readable here, never editable."""

    list_display = ["created_at", "target", "target_id", "user", "version"]
    list_filter = ["target"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TrainedModel)
class TrainedModelAdmin(admin.ModelAdmin):
    list_display = ["name", "architecture", "dataset", "initialisation", "best_epoch", "created_at"]
    readonly_fields = ["job", "checkpoint", "history", "metrics", "mining"]


@admin.register(Unit)
class UnitAdmin(admin.ModelAdmin):
    list_display = ["__str__", "model", "selected_for", "selection_rank", "suggested_concept", "suggested_iou"]
    list_filter = ["selected_for"]
    search_fields = ["channel"]
