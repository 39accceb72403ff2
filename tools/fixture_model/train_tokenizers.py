"""Train the fixture tokenizers offline (run by hand; the results are committed, as training is not bit-stable).

    python -m tools.fixture_model.train_tokenizers

Writes tools/fixture_model/tokenizer_t5/tokenizer.json (SentencePiece Unigram, Metaspace, NFKC, the T5 pair
template ``$A </s> $B </s>``) and tools/fixture_model/tokenizer_multilingual/tokenizer.json (WordPiece with
BERT multilingual-uncased's normalizer: lowercase, accents stripped, Han characters split one per token).
Both are trained with ``tokenizers`` on text from corpus.py, with small vocabularies.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from tools.fixture_model.corpus import CorpusGenerator, MultilingualCorpusGenerator

HERE = Path(__file__).parent
T5_DIR = HERE / "tokenizer_t5"
MULTILINGUAL_DIR = HERE / "tokenizer_multilingual"
T5_VOCAB = 2000
MULTILINGUAL_VOCAB = 4000
T5_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2, as in T5
T5_EXTRA_IDS = 100  # <extra_id_0> ... <extra_id_99>, added special tokens after the vocabulary, as in T5
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def training_texts(corpus: CorpusGenerator, pairs: int) -> list[str]:
    texts = []
    for _ in range(pairs):
        query = corpus.query()
        passage = corpus.passage(query)
        texts += [query, passage, passage[:200].title()]  # some capitals, as real text has
    return texts


def t5_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.Unigram())
    # T5 ships a precompiled nmt_nfkc charsmap; NFKC is its documented equivalent for ordinary text.
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(
        vocab_size=T5_VOCAB,
        special_tokens=list(T5_SPECIALS),
        unk_token="<unk>",  # noqa: S106
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts(CorpusGenerator(seed=7), 3000), trainer)
    eos = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.add_special_tokens([f"<extra_id_{index}>" for index in range(T5_EXTRA_IDS)])
    return tokenizer


def multilingual_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))  # noqa: S106
    # bert-base-multilingual-uncased: strip_accents null means "as lowercase", i.e. stripped.
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=MULTILINGUAL_VOCAB,
        special_tokens=list(BERT_SPECIALS),
        continuing_subword_prefix="##",
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts(MultilingualCorpusGenerator(seed=7), 3000), trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def write(tokenizer: Tokenizer, directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    data = json.loads(tokenizer.to_str())
    (directory / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", "utf-8")


def main() -> int:
    write(t5_tokenizer(), T5_DIR)
    write(multilingual_tokenizer(), MULTILINGUAL_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
