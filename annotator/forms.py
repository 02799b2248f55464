"""The New-job form: what an admin may start from the browser."""

from __future__ import annotations

from typing import Any

from django import forms

from mining.networks import ARCHITECTURES

from .models import Dataset, Explanation, Image, Job, TrainedModel


class JobStartForm(forms.Form):
    kind = forms.ChoiceField(choices=Job.Kind.choices, initial=Job.Kind.TRAIN)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    input = forms.ChoiceField(
        choices=[
            ("", "the dataset's default"),
            ("patches", "patches (DeepMiner; mammograms)"),
            ("whole_image", "whole images (hip-fracture classifier)"),
        ],
        required=False,
        help_text="training only: what the network sees",
    )
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
        help_text="the model to mine or explain with (mining and batch explanation)",
    )
    shards = forms.IntegerField(min_value=1, max_value=64, initial=1, required=False, help_text="mining only")
    split = forms.ChoiceField(
        choices=Image.Split.choices,
        initial=Image.Split.HOLDOUT,
        required=False,
        help_text="batch explanation: the split to explain (hold-out is where explanations are evaluated)",
    )
    source = forms.ChoiceField(
        choices=[
            ("auto", "auto: expert labels, else import descriptors, else reports"),
            ("labels", "the experts' fracture labels"),
            ("import", "the descriptor columns of the import"),
            ("report", "a free-text report column"),
        ],
        initial="auto",
        required=False,
        help_text="sentence generator only: its training sentences",
    )
    method = forms.ChoiceField(
        choices=Explanation.Method.choices, initial=Explanation.Method.CAM, required=False, help_text="class map"
    )

    def job_params(self) -> dict[str, Any]:
        data = self.cleaned_data
        kind = data["kind"]
        if kind == Job.Kind.TRAIN:
            keys = ["input", "architecture", "epochs", "patch_size", "validation_fraction", "weights_file"]
        elif kind == Job.Kind.MINE:
            keys = ["shards"]
        elif kind == Job.Kind.EXPLAIN:
            keys = ["split", "method"]
        elif kind == Job.Kind.CAPTION:
            keys = ["epochs", "source"]
        else:
            keys = []
        params = {key: data[key] for key in keys if data.get(key) not in (None, "")}
        if kind in (Job.Kind.MINE, Job.Kind.EXPLAIN, Job.Kind.CAPTION):
            params["model"] = data["model"].pk if data.get("model") else None
        return params


class UploadForm(forms.Form):
    """Explain an image that belongs to no dataset."""

    file = forms.FileField(
        label="Image", help_text="PNG, JPEG, TIFF or DICOM; grayscale or colour (read as grayscale)", required=False
    )
    model = forms.ModelChoiceField(
        queryset=TrainedModel.objects.order_by("-created_at"),
        required=False,
        empty_label="the newest model",
        help_text="the trained model that explains it",
    )
