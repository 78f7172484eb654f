"""Speech: ASR engines (Vosk, faster-whisper), audio decoding and TTS. Filled in by the voice issue."""
