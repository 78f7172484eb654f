"""Intent classifier: TF-IDF of jieba words and character 1–2-grams, logistic regression (scikit-learn).

Chosen over DIET by 5-fold cross-validation on the training data (macro F1
0.840 against DIET's lower held-out figure; see README): with about 2,800
short examples a linear model on sublinear TF-IDF generalises better than a
transformer that reaches 99.8 % training accuracy and is certain of its
mistakes, trains in seconds instead of minutes and answers in well under a
millisecond. It featurises the text itself, so it needs no Rasa featurizer.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List

import jieba
import joblib
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline, make_union

jieba.setLogLevel(logging.WARNING)
MODEL_FILE = "tfidf_intent.joblib"


def jieba_words(text: str) -> List[str]:
    """Module-level, so the fitted pipeline pickles it by reference."""
    return [w for w in jieba.lcut(text.lower()) if w.strip()]


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class TfidfIntentClassifier(GraphComponent, IntentClassifier):
    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {"C": 10.0, "char_ngram_max": 2, "max_iter": 3000, "ranking_length": 10}

    @staticmethod
    def required_packages() -> List[str]:
        return ["sklearn", "jieba"]

    def __init__(
        self, config: Dict[str, Any], model_storage: ModelStorage, resource: Resource, pipeline: Pipeline | None = None
    ) -> None:
        self.config = {**self.get_default_config(), **config}
        self.model_storage, self.resource, self.pipeline = model_storage, resource, pipeline

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> TfidfIntentClassifier:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        examples = [e for e in training_data.intent_examples if e.get(TEXT)]
        features = make_union(
            TfidfVectorizer(tokenizer=jieba_words, token_pattern=None, lowercase=False, sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, self.config["char_ngram_max"]), sublinear_tf=True),
        )
        classifier = LogisticRegression(
            C=self.config["C"], max_iter=self.config["max_iter"], class_weight="balanced", random_state=0
        )
        self.pipeline = make_pipeline(features, classifier)
        self.pipeline.fit([e.get(TEXT) for e in examples], [e.get(INTENT) for e in examples])
        with self.model_storage.write_to(self.resource) as directory:
            joblib.dump(self.pipeline, directory / MODEL_FILE)
        return self.resource

    @classmethod
    def load(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> TfidfIntentClassifier:
        with model_storage.read_from(resource) as directory:
            pipeline = joblib.load(directory / MODEL_FILE)
        return cls(config, model_storage, resource, pipeline)

    def process(self, messages: List[Message]) -> List[Message]:
        if self.pipeline is None:
            return messages
        texts = [m.get(TEXT) or "" for m in messages]
        labels = self.pipeline.classes_
        for message, probabilities in zip(messages, self.pipeline.predict_proba(texts), strict=True):
            # Button payloads (「/intent{…}」) are classified too: Rasa's RegexMessageHandler overrides them
            # later, and the FallbackClassifier in between needs an intent on every message.
            ranking = sorted(zip(labels, probabilities, strict=True), key=lambda pair: -pair[1])
            ranking = ranking[: self.config["ranking_length"]]
            message.set(
                INTENT,
                {INTENT_NAME_KEY: str(ranking[0][0]), PREDICTED_CONFIDENCE_KEY: float(ranking[0][1])},
                add_to_output=True,
            )
            message.set(
                INTENT_RANKING_KEY,
                [{INTENT_NAME_KEY: str(name), PREDICTED_CONFIDENCE_KEY: float(p)} for name, p in ranking],
                add_to_output=True,
            )
        return messages
