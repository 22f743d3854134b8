# How closely answer length follows prompt length (Pearson correlation of the logs, lengths
# in characters / 4), per corpus of ../shared/data and for mixes like the simulator's harvests:
# the evidence behind the `transformation` signal's range (0.7 to 0.9).
# Usage (from the project root): python3 bench/probes/length_correlation.py
import json, math, random
random.seed(1)
D='../shared/data/corpora/'
def corr(pairs):
    xs=[math.log(max(1,len(p)/4)) for p,a in pairs]; ys=[math.log(max(1,len(a)/4)) for p,a in pairs]
    n=len(xs); mx=sum(xs)/n; my=sum(ys)/n
    sxx=sum((x-mx)**2 for x in xs); syy=sum((y-my)**2 for y in ys); sxy=sum((x-mx)*(y-my) for x,y in zip(xs,ys))
    return round(sxy/math.sqrt(sxx*syy),3)
chat=[]
for l in open(D+'benign-sharegpt.jsonl'):
    c=json.loads(l); u=[t for t in c['turns'] if t['role']=='user']; a=[t for t in c['turns'] if t['role']=='assistant']
    if u and a: chat.append((u[0]['content'],a[0]['content']))
hh=[]
for l in open(D+'benign-hh-harmless.jsonl'):
    c=json.loads(l); t=c['turns']
    if len(t)>1: hh.append((t[0]['content'],t[1]['content']))
maths=[(j['question'],j['answer']) for j in map(json.loads,open(D+'math-gsm8k-train.jsonl'))]
seeds=[(j['instruction']+' '+j.get('input',''), j['output']) for j in map(json.loads,open(D+'instruct-selfinstruct-seeds.jsonl'))]
tmpl=[(j['prompt'],j['completion']) for j in map(json.loads,open(D+'templated-t0-dev.jsonl'))]
for name,s in [('sharegpt openings',chat),('hh dialogues',hh),('gsm8k',maths),('t0 templates',tmpl)]:
    print(f'{name:28s}', corr(random.sample(s,min(2000,len(s)))))
for trial in range(3):
    mix=random.sample(chat,450)+random.sample(seeds,80)+random.sample(maths,170)+random.sample(tmpl,150)+random.sample(hh,150)
    print(f'{"broad harvest mix":28s}', corr(mix), 'wrapped', corr([('x'*100+p,a) for p,a in mix]),
          '| gsm8k wrapped', corr([('x'*60+p,a) for p,a in random.sample(maths,500)]))
docs=[a for p,a in chat if len(a)>1500]
print(f'{"translations of long texts":28s}', corr([('x'*50+d,'y'*int(len(d)*random.uniform(1.0,1.3))) for d in random.sample(docs,300)]))
texts=[a for p,a in chat if len(a)>50]
print(f'{"translations of any texts":28s}', corr([('x'*50+d,'y'*int(len(d)*random.uniform(1.0,1.3))) for d in random.sample(texts,300)]))
