"""The New-reader-study form: an admin picks the images, the arms, the models and the readers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db.models import Q

from .models import Dataset, Image, ReaderStudy, SentenceModel, TrainedModel
from .permissions import ADMIN_GROUP, EXPERT_GROUP

__all__ = ["ReaderStudyForm"]

DEFAULT_ARMS = [ReaderStudy.Arm.SALIENCY, ReaderStudy.Arm.SENTENCE, ReaderStudy.Arm.BOTH]  # the paper's three


class ReaderStudyForm(forms.Form):
    name = forms.CharField(max_length=200)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    classifier = forms.ModelChoiceField(
        queryset=TrainedModel.objects.order_by("-created_at"), help_text="its SmoothGrad map is the saliency arm"
    )
    sentence_model = forms.ModelChoiceField(
        queryset=SentenceModel.objects.order_by("-created_at"),
        required=False,
        help_text="the sentence generator on that classifier (the sentence arms)",
    )
    arms = forms.MultipleChoiceField(
        choices=ReaderStudy.Arm.choices, initial=DEFAULT_ARMS, widget=forms.CheckboxSelectMultiple
    )
    split = forms.ChoiceField(choices=[("", "—"), *Image.Split.choices], required=False, initial=Image.Split.TEST)
    sample = forms.IntegerField(min_value=1, required=False, help_text="a random sample of this many of the split")
    images = forms.CharField(
        required=False, help_text="or chosen images: their ids, separated by commas or spaces (the split is ignored)"
    )
    seed = forms.IntegerField(min_value=0, initial=0, help_text="the sample, the pairs' sides and readers' orders")
    readers = forms.ModelMultipleChoiceField(
        queryset=User.objects.filter(
            Q(groups__name__in=[EXPERT_GROUP, ADMIN_GROUP]) | Q(is_superuser=True) | Q(is_staff=True)
        )
        .distinct()
        .order_by("username"),
        widget=forms.CheckboxSelectMultiple,
    )

    def clean_images(self) -> list[int]:
        text = self.cleaned_data.get("images") or ""
        try:
            return [int(part) for part in text.replace(",", " ").split()]
        except ValueError:
            raise forms.ValidationError("image ids are whole numbers") from None

    def design_arguments(self) -> dict[str, Any]:
        """The StudyDesign fields the form holds (all but who creates it)."""
        data = self.cleaned_data
        names = ("name", "dataset", "classifier", "sentence_model", "arms")
        return {**{name: data[name] for name in names}, "readers": list(data["readers"])}

    def selection_arguments(self) -> dict[str, Any]:
        """How the images are chosen: a split, a sample of it, or ids; and the seed."""
        data = self.cleaned_data
        return {
            "split": data["split"] or "",
            "sample": data["sample"],
            "image_ids": data["images"],
            "seed": data["seed"],
        }
