"""The New-job form: what an admin may start from the browser."""

from __future__ import annotations

from typing import Any

from django import forms

from mining.networks import ARCHITECTURES

from .models import Dataset, Explanation, Image, Job, TrainedModel
from .services.datasets import LAYOUTS


class JobStartForm(forms.Form):
    # An import makes its own dataset and has its own page (DatasetImportForm).
    kind = forms.ChoiceField(choices=[c for c in Job.Kind.choices if c[0] != Job.Kind.IMPORT], initial=Job.Kind.TRAIN)
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


class DatasetImportForm(forms.Form):
    """Import a dataset from the browser: a zip of images + manifest.csv, or a folder under an import root."""

    name = forms.CharField(max_length=200, help_text="the new dataset's name (must be unused)")
    kind = forms.ChoiceField(choices=Dataset.Kind.choices, initial=Dataset.Kind.MAMMOGRAM)
    layout = forms.ChoiceField(
        choices=[(layout, layout) for layout in LAYOUTS],
        initial=LAYOUTS[0],
        help_text="manifest: images + manifest.csv; cbis-ddsm: the description CSVs + DICOM tree",
    )
    seed = forms.IntegerField(min_value=0, initial=0, help_text="seed of the patient-level 80/10/10 split")
    source = forms.ChoiceField(
        choices=[("upload", "upload a zip"), ("folder", "a folder on the server")],
        initial="upload",
        widget=forms.RadioSelect,
    )
    folder = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.TextInput(attrs={"list": "import-folders"}),  # the page's datalist of the roots' folders
        help_text="a folder under the server's import root: absolute, or relative to the first root",
    )
    # Last: a zip refused for its size mid-upload loses no field (the upload handler skips only the file).
    archive = forms.FileField(
        required=False, label="Zip", help_text="images and manifest.csv (at the top, or in its one folder)"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("source") == "upload" and not data.get("archive") and "archive" not in self.errors:
            self.add_error("archive", "choose a zip file to upload")
        if data.get("source") == "folder" and not data.get("folder"):
            self.add_error("folder", "name a folder under the import root")
        return data

    def import_params(self) -> dict[str, Any]:
        data = self.cleaned_data
        params = {key: data[key] for key in ("name", "kind", "layout", "seed")}
        if data["source"] == "folder":
            params["folder"] = data["folder"]
        return params
