function __bmCheck(){var imgs=Array.prototype.slice.call(document.images);
var ok=imgs.filter(function(i){return i.complete&&i.naturalWidth>0;});
var b=document.body;b.setAttribute('data-figures-total',imgs.length);b.setAttribute('data-figures-loaded',ok.length);
b.setAttribute('data-errors',window.__bmErrors.length);b.setAttribute('data-error-text',window.__bmErrors.join(' | '));
b.setAttribute('data-check','done');}
if(document.readyState==='complete'){__bmCheck();}else{window.addEventListener('load',__bmCheck);}
