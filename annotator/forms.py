"""The New-job form: what an admin may start from the browser."""

from __future__ import annotations

from typing import Any

from django import forms

from mining.networks import ARCHITECTURES

from .models import Dataset, Job, TrainedModel


class JobStartForm(forms.Form):
    kind = forms.ChoiceField(choices=Job.Kind.choices, initial=Job.Kind.TRAIN)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    architecture = forms.ChoiceField(choices=[(a, a) for a in ARCHITECTURES], initial="resnet18", required=False)
    epochs = forms.IntegerField(min_value=1, max_value=500, initial=12, required=False)
    patch_size = forms.IntegerField(
        min_value=32, max_value=1024, required=False, help_text="network input in pixels; empty = the patches' own size"
    )
    validation_fraction = forms.FloatField(
        min_value=0.01,
        max_value=0.5,
        initial=0.1,
        required=False,
        help_text="share of the training patients carved out (seeded, by patient) to pick the best epoch",
    )
    weights_file = forms.CharField(
        required=False,
        max_length=500,
        help_text="a state dict on the server (e.g. ImageNet ResNet weights). Empty: start from random weights.",
    )
    model = forms.ModelChoiceField(
        queryset=TrainedModel.objects.order_by("-created_at"),
        required=False,
        help_text="the model to mine (mining only)",
    )
    shards = forms.IntegerField(min_value=1, max_value=64, initial=1, required=False, help_text="mining only")

    def job_params(self) -> dict[str, Any]:
        data = self.cleaned_data
        kind = data["kind"]
        if kind == Job.Kind.TRAIN:
            keys = ["architecture", "epochs", "patch_size", "validation_fraction", "weights_file"]
        elif kind == Job.Kind.MINE:
            keys = ["shards"]
        else:
            keys = []
        params = {key: data[key] for key in keys if data.get(key) not in (None, "")}
        if kind == Job.Kind.MINE:
            params["model"] = data["model"].pk if data.get("model") else None
        return params
