document.title = 'LoRA Fleet';
